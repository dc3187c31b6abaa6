// Activation stash for MindSpore `ops.Custom(func_type="aot")` (see models/kernels/stash.py).
//
// The block-by-block UNet gradient (prediff_cli/pipelines/training/blockwise.py) runs each block twice: once in a
// forward graph without gradients and once, recomputed, inside that block's gradient graph. Nine tenths of a
// block's forward FLOPs are its 3x3x3 convolutions and linear layers. `StashStore` copies such an output into a
// numbered slot held here, outside MindSpore's memory pool, while the forward graph runs; in the gradient graph
// the `StashLoad*` ops stand in for the same layers and copy the slot back instead of computing it (their bprops are
// the layers' own gradients). Everything else in the block is recomputed as before.
//
// Slots live until `prediff_stash_release()`; a slot is reused (not reallocated) when the next store fits.
// AOT calling convention as in cpu_kernels.cc: inputs first, the output last; non-zero return = failure.
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <omp.h>

namespace {

struct Slot {
  std::unique_ptr<float[]> data;
  int64_t size = 0;      // floats stored by the last StashStore
  int64_t capacity = 0;  // floats allocated
};

std::mutex g_mutex;  // guards the map itself; each slot is only touched by the op that names it
std::unordered_map<int32_t, std::unique_ptr<Slot>> g_slots;

int64_t element_count(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// a memory-bound copy split over the OpenMP threads (one thread copies ~10 GB/s here, the block outputs are MBs)
void parallel_copy(float *dst, const float *src, int64_t n) {
  constexpr int64_t kChunk = 1 << 18;  // 1 MiB of floats per task
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * kChunk, len = (c + 1) * kChunk < n ? kChunk : n - lo;
    std::memcpy(dst + lo, src + lo, static_cast<size_t>(len) * sizeof(float));
  }
}

Slot *find_slot(int32_t id, bool create) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_slots.find(id);
  if (it != g_slots.end()) return it->second.get();
  if (!create) return nullptr;
  return (g_slots[id] = std::make_unique<Slot>()).get();
}

// the output of a StashLoad* op: the slot's floats, which must be exactly as many as the output holds
int load(int nparam, void **params, int *ndims, int64_t **shapes) {
  const int slot_index = nparam - 2, out_index = nparam - 1;
  if (element_count(ndims[slot_index], shapes[slot_index]) != 1) return 1;
  const Slot *slot = find_slot(*static_cast<const int32_t *>(params[slot_index]), false);
  const int64_t n = element_count(ndims[out_index], shapes[out_index]);
  if (slot == nullptr) return 2;  // nothing stored under this number
  if (slot->size != n) return 3;  // stored by a call of another shape
  parallel_copy(static_cast<float *>(params[out_index]), slot->data.get(), n);
  return 0;
}

}  // namespace

extern "C" {

// params: y (float32, any shape), slot (int32, one element), out (float32, one element). y is kept in the slot;
// out (0) is only there for the graph to order the copy before y's next use (`ops.depend`), so y is not copied twice.
int StashStore(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3 || element_count(ndims[1], shapes[1]) != 1 || element_count(ndims[2], shapes[2]) != 1) return 1;
  const float *y = static_cast<const float *>(params[0]);
  const int64_t n = element_count(ndims[0], shapes[0]);
  Slot *slot = find_slot(*static_cast<const int32_t *>(params[1]), true);
  if (slot->capacity < n) {
    slot->data.reset(new (std::nothrow) float[n]);
    if (!slot->data) {
      slot->capacity = slot->size = 0;
      return 4;  // out of memory
    }
    slot->capacity = n;
  }
  slot->size = n;
  parallel_copy(slot->data.get(), y, n);
  static_cast<float *>(params[2])[0] = 0.0f;
  return 0;
}

// The stored output of a 3x3(x3) convolution. params: x, w, b, slot, out (shaped like the convolution's output).
int StashLoadConv(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return nparam == 5 ? load(nparam, params, ndims, shapes) : 1;
}

// The stored output of a linear layer on rows. params: x (rows, in), w (out, in), [b (out)], slot, out (rows, out).
int StashLoadDense(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return nparam == 4 ? load(nparam, params, ndims, shapes) : 1;
}

int StashLoadDenseBias(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return nparam == 5 ? load(nparam, params, ndims, shapes) : 1;
}

// Host-side helpers (ctypes): bytes held in all slots, and freeing them.
int64_t prediff_stash_bytes() {
  std::lock_guard<std::mutex> lock(g_mutex);
  int64_t total = 0;
  for (const auto &entry : g_slots) total += entry.second->capacity * static_cast<int64_t>(sizeof(float));
  return total;
}

void prediff_stash_release() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_slots.clear();
}

}  // extern "C"
