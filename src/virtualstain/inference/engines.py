"""Inference engines: one network on one backend at one precision, a normalised window in, its prediction out.

Every engine maps a float32 ``(C, [Z,] Y, X)`` window (a multiple of the network's size multiple) to the
float32 ``(C_out, ...)`` prediction, so tiling, stitching, test-time augmentation and de-normalisation
(:mod:`~virtualstain.inference.predict`) are the same on all of them.

========== ============== ==============================================================================
backend    precisions     where
========== ============== ==============================================================================
torch      fp32           the reference: folded batch norm, channels-last (``prepare_for_inference``)
torch      bf16           CPU autocast where the processor computes bf16 natively; CUDA GPUs with bf16
torch      fp16           CUDA autocast
onnxruntime fp32          CPU; CUDA execution provider on a GPU
onnxruntime fp16          TensorRT execution provider (GPU, where onnxruntime-gpu and TensorRT are installed)
openvino   fp32, bf16     CPU (bf16 where OpenVINO reports the capability)
========== ============== ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .._hardware import cpu_has_native_bf16
from ..errors import UserError
from ..models.bundle import ModelBundle
from ..models.configs import NetworkConfig
from ..models.inference import memory_format, network_config
from .options import BACKENDS, PRECISIONS

#: Largest number of compiled static-shape OpenVINO models kept per engine (tiles mostly share one shape).
OPENVINO_SHAPES_KEPT = 4


@dataclass(frozen=True)
class EngineSpec:
    """Which backend at which precision on which device (``"cpu"``, ``"cuda:0"``…)."""

    backend: str
    precision: str
    device: str = "cpu"

    def __str__(self) -> str:
        return f"{self.backend} {self.precision} ({self.device})"


class Engine(Protocol):
    """A network ready to run: ``engine(window)`` → prediction (both float32 numpy, channels first, no batch axis)."""

    spec: EngineSpec
    config: NetworkConfig

    def __call__(self, window: np.ndarray) -> np.ndarray: ...


def installed(backend: str) -> bool:
    """Whether the Python package of ``backend`` can be imported."""
    if backend == "torch":
        return True
    import importlib.util

    return importlib.util.find_spec(backend) is not None


_INSTALL = {"onnxruntime": 'pip install "virtualstain[onnx]"', "openvino": 'pip install "virtualstain[openvino]"'}


class TorchEngine:
    """The network in torch: fp32, or autocast to bf16 (CPU with native bf16, CUDA) or fp16 (CUDA)."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str = "fp32") -> None:
        _check_precision("torch", precision, device)
        self.network, self.device, self.config = network, device, network_config(network)
        self.spec = EngineSpec("torch", precision, str(device))
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(window, np.float32))[None].to(self.device)
        x = x.contiguous(memory_format=memory_format(self.config.spatial_dims))
        with torch.inference_mode():
            if self._dtype is None:
                y = self.network(x)
            else:
                with torch.autocast(self.device.type, dtype=self._dtype):
                    y = self.network(x)
        return y[0].float().cpu().numpy()


class OnnxRuntimeEngine:
    """The exported ONNX graph in onnxruntime: CPU, CUDA, or TensorRT in fp16."""

    def __init__(self, onnx_path, config: NetworkConfig, device: torch.device, precision: str = "fp32") -> None:
        _check_precision("onnxruntime", precision, device)
        import onnxruntime as ort

        self.config, self.spec = config, EngineSpec("onnxruntime", precision, str(device))
        if device.type == "cuda":
            index = {"device_id": device.index or 0}
            providers: list = ([("TensorrtExecutionProvider", {**index, "trt_fp16_enable": True})]
                               if precision == "fp16" else []) + [("CUDAExecutionProvider", index)]
            missing = [p for p, _ in providers if p not in ort.get_available_providers()]
            if missing:
                raise UserError(f"--backend onnxruntime on {device}: this onnxruntime has no {', '.join(missing)} "
                                f"(it offers {', '.join(ort.get_available_providers())}); pip install onnxruntime-gpu, "
                                "or use --backend torch")
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        (y,) = self.session.run(None, {"input": np.ascontiguousarray(window, np.float32)[None]})
        return np.asarray(y[0], np.float32)


class OpenVinoEngine:
    """The exported ONNX graph compiled by OpenVINO for the CPU, one static-shape model per window shape."""

    def __init__(self, onnx_path, config: NetworkConfig, precision: str = "fp32") -> None:
        _check_precision("openvino", precision, torch.device("cpu"))
        import openvino as ov

        self.config, self.spec = config, EngineSpec("openvino", precision, "cpu")
        self._core = ov.Core()
        if precision == "bf16" and "BF16" not in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise UserError("--precision bf16: OpenVINO reports no bf16 support on this CPU; use --precision fp32")
        self._model = self._core.read_model(str(onnx_path))
        self._hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        self._compiled: dict[tuple[int, ...], object] = {}

    def _request(self, shape: tuple[int, ...]):
        if shape not in self._compiled:
            if len(self._compiled) >= OPENVINO_SHAPES_KEPT:
                self._compiled.pop(next(iter(self._compiled)))
            model = self._model.clone()
            model.reshape({0: list(shape)})
            compiled = self._core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": self._hint,
                                                               "PERFORMANCE_HINT": "LATENCY"})
            self._compiled[shape] = compiled.create_infer_request()
        return self._compiled[shape]

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(window, np.float32)[None]
        request = self._request(x.shape)
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data[0], np.float32)


def _check_precision(backend: str, precision: str, device: torch.device) -> None:
    """Refuse a backend × precision × device that does not exist or would only be emulated, naming the fix."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r} must be one of {['auto', *BACKENDS]}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r} must be one of {['auto', *PRECISIONS]}")
    if not installed(backend):
        raise UserError(f"--backend {backend}: the {backend} package is not installed; {_INSTALL[backend]}, or use "
                        "--backend auto")
    gpu = device.type == "cuda"
    if backend == "openvino" and device.type != "cpu":
        raise UserError(f"--backend openvino runs on the CPU only (asked for {device}); use --device cpu, or "
                        "--backend torch/onnxruntime on the GPU")
    if precision == "fp32":
        return
    if backend == "torch":
        if precision == "bf16" and not (cpu_has_native_bf16() if device.type == "cpu" else
                                        gpu and torch.cuda.is_bf16_supported()):
            raise UserError(f"--precision bf16: {device} has no native bfloat16 arithmetic (torch would emulate it, "
                            "slower than fp32); use --precision fp32")
        if precision == "fp16" and not gpu:
            raise UserError("--precision fp16 needs a CUDA GPU with --backend torch (CPUs compute fp16 slowly); use "
                            "--precision bf16 or fp32")
        return
    if backend == "onnxruntime" and not (precision == "fp16" and gpu):
        raise UserError(f"--backend onnxruntime --precision {precision}: onnxruntime runs this network in fp32 on the "
                        "CPU and in fp16 only through TensorRT on a GPU; use --precision fp32, or --backend openvino "
                        "for bf16 on the CPU")
    if backend == "openvino" and precision != "bf16":
        raise UserError(f"--backend openvino --precision {precision}: OpenVINO's CPU plugin offers fp32 and bf16")


def build_engine(bundle: ModelBundle, spec: EngineSpec) -> Engine:
    """An engine for ``bundle`` (the ONNX graph exported on first use and cached, see
    :func:`~virtualstain.inference.onnx_graph.cached_onnx`).

    Raises
    ------
    UserError
        An unknown backend or precision, a backend that is not installed, or a combination that does not
        exist on this machine (``--precision fp16`` on a CPU…), with the fix.
    """
    device = torch.device(spec.device)
    _check_precision(spec.backend, spec.precision, device)
    if spec.backend == "torch":
        return TorchEngine(bundle.inference_network(device), device, spec.precision)
    from .onnx_graph import cached_onnx

    path = cached_onnx(bundle)
    if spec.backend == "onnxruntime":
        return OnnxRuntimeEngine(path, bundle.config, device, spec.precision)
    return OpenVinoEngine(path, bundle.config, spec.precision)


def candidate_specs(device: torch.device) -> list[EngineSpec]:
    """Every backend × precision this machine can run for ``device``, the fp32 torch reference first."""
    out = [EngineSpec("torch", "fp32", str(device))]
    for backend in BACKENDS:
        for precision in PRECISIONS:
            spec = EngineSpec(backend, precision, str(device))
            if spec == out[0]:
                continue
            try:
                _check_precision(backend, precision, device)
            except UserError:
                continue
            out.append(spec)
    return out
