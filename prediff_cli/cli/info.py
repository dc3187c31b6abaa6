"""`prediff info`: package versions, the device MindSpore would use, threads, the fused CPU kernels."""
from __future__ import annotations

import json
import platform
from importlib import metadata

import typer
from rich.table import Table
from typing_extensions import Annotated

from prediff import __version__
from prediff.cli.options import Device, DeviceOpt
from prediff.cli.reporting import console, guarded

PACKAGES = ("mindspore", "numpy", "typer", "rich", "h5py", "netCDF4", "PyYAML", "imageio", "Pillow", "scipy")


def collect_info(device: str = "auto") -> dict:
    """Versions, device and thread facts as a plain dict."""
    from prediff_models.kernels import bf16_support, library_path, unavailable_reason, uses_avx512
    from prediff_models.kernels.dense import gemm_enabled
    from prediff.runtime import device_available, resolve_device, thread_info

    versions = {"prediff": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "device": resolve_device(device),
        "available_devices": [d for d in ("cpu", "gpu", "ascend") if device_available(d)],
        "platform": platform.platform(),
        "threads": thread_info(),
        "cpu_kernels": library_path() or f"off ({unavailable_reason()})",
        "cpu_kernel_paths": _kernel_paths(library_path() is not None, uses_avx512(), gemm_enabled()),
        "bf16": _bf16_line(bf16_support()),
    }


def _bf16_line(support) -> str:
    """Whether `--precision auto` runs bf16 here, and why not."""
    return f"available ({support.reason})" if support.available else f"off: {support.reason}"


def _kernel_paths(built: bool, avx512: bool, gemm: bool) -> str:
    """Which instruction set the convolution kernel uses, and what computes the linear layers and the convolutions'
    weight gradients."""
    if not built:
        return "MindSpore's own kernels"
    convolution = "AVX-512 convolution tiles" if avx512 else "AVX2 convolution tiles"
    if gemm:
        return f"{convolution}; linear layers and convolution weight gradients on the GEMM kernels"
    return f"{convolution}; linear layers on MindSpore's matmul"


def register(app: typer.Typer) -> None:
    @app.command("info")
    @guarded
    def info(device: DeviceOpt = Device.auto,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
        """Show package versions, the device MindSpore would use, the thread settings and the fused CPU kernels."""
        facts = collect_info(device.value)
        if as_json:
            console.print_json(json.dumps(facts))
            return
        table = Table(title="prediff info", show_header=False)
        for name, version in facts["versions"].items():
            table.add_row(name, version or "[red]not installed[/]")
        table.add_row("device", facts["device"])
        table.add_row("available devices", ", ".join(facts["available_devices"]))
        table.add_row("platform", facts["platform"])
        for key, value in facts["threads"].items():
            table.add_row(key, str(value))
        table.add_row("fused CPU kernels", facts["cpu_kernels"])
        table.add_row("kernel paths", facts["cpu_kernel_paths"])
        table.add_row("bf16 compute", facts["bf16"])
        console.print(table)
