// Shared by the convolution and matmul kernels (conv_kernels.cc, gemm_kernels.cc): per-thread scratch buffers on
// transparent huge pages, and whether the AVX-512 micro-tiles and GEMM kernels are to be used on this CPU.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>

#include <sys/mman.h>

namespace prediff_kernels {

inline bool avx512_wanted() {
  static const bool wanted = [] {
    const char *env = std::getenv("PREDIFF_KERNEL_AVX512");
    return !(env && env[0] == '0') && __builtin_cpu_supports("avx512f");
  }();
  return wanted;
}

// The GEMM kernels (linear layers, the convolution's weight gradient) on AVX-512 CPUs; PREDIFF_KERNEL_GEMM=0 keeps
// MindSpore's matmul for the linear layers and the AVX2 weight-gradient tile for the convolutions.
inline bool gemm_wanted() {
  static const bool wanted = [] {
    const char *env = std::getenv("PREDIFF_KERNEL_GEMM");
    return !(env && env[0] == '0') && avx512_wanted();
  }();
  return wanted;
}

// Scratch buffers are kept per calling thread between calls (the op runs on MindSpore's kernel threads, once per
// layer and step) up to this size; a larger one (the VAE decoding many frames) is released after its call, so that
// a long-lived process does not hold it.
constexpr size_t kKeptScratchFloats = size_t(16) << 20;  // 64 MiB
constexpr size_t kHugePage = size_t(2) << 20;

// A growable float buffer on transparent huge pages where the kernel allows them: the tiles read 3 rows of each of
// 64 input channels, whose planes lie far apart in the padded input (67 KB apart for a 128 x 128 frame), so with
// 4 KB pages nearly every load of a tile lands on another page and misses the first-level TLB.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  ~Scratch() { std::free(data_); }

  float *get(size_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      const size_t bytes = (floats * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
      void *p = std::aligned_alloc(kHugePage, bytes);
      if (p == nullptr) throw std::bad_alloc();
      madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP the buffer works on small pages
      data_ = static_cast<float *>(p);
      capacity_ = bytes / sizeof(float);
    }
    return data_;
  }

  void release_if_large() {
    if (capacity_ > kKeptScratchFloats) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
    }
  }

 private:
  float *data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace prediff_kernels
