"""Grad-CAM (Selvaraju et al. 2017), for eager and TorchScript models alike.

Default layer (``default_layer``): the **block output** at the end of the feature extractor, the
layer pytorch-grad-cam's documentation and common practice use (``model.layer4[-1]`` on a
ResNet). The rule, written on module names so that it works on TorchScript submodules too
(their ``original_name`` stands in for the class):

1. find the last 2-D convolution in registration order (``last_conv``: ``nn.Conv2d``, or a
   scripted submodule whose ``original_name`` is ``Conv2d``);
2. take the innermost ``nn.Sequential`` / ``nn.ModuleList`` on its path (the feature
   extractor's top level, e.g. ``layer4`` or ``features``) and its child that holds the conv;
3. extend over the children right after it that keep the spatial layout elementwise
   (BatchNorm/GroupNorm/InstanceNorm, ReLU-like activations, Dropout, Identity) — not over
   pooling, flattening or a linear layer;
4. the layer is that child's *output*. A model with no such container keeps the conv itself.

Per bundled architecture: ``resnet18`` → ``layer4.1`` (the last BasicBlock: after BN, the
residual add and the ReLU; was ``layer4.1.conv2``, which gave all-zero maps on trained small
models); ``small_cnn`` → ``features.14`` (the last conv-BN-ReLU block's ReLU; was
``features.12``, the conv before BN and ReLU); ``vit_tiny`` has no convolution (its patch
embedding is a linear map), so Grad-CAM raises ``NotApplicable``. Or pass
``layer="layer4.1.conv2"`` (any module name; a name inside a model wrapped for preprocessing or
tuple outputs is found too).

The map is ReLU(Σ_k α_k A_k) with α_k the spatial mean of ∂y_target/∂A_k, upsampled to the input
bilinearly and max-normalised (captum's ``LayerGradCam`` with ``relu_attributions=True``, then
``LayerAttribution.interpolate(..., "bilinear")``: tests/test_gradcam_reference.py); at 64×64
input a ResNet-18's block output is 32× coarser than the image, so a small tell shows as a blob.

Activations and their gradients are taken with a forward hook on eager modules. TorchScript
modules accept no hooks, so for them the scripted graph is copied once, inlined, and rewritten
to add a zero tensor to the layer's output and to return that output too: the gradient with
respect to the added tensor is ∂y/∂A. A conv's call is found by its weight; another module's
output by the module hierarchy the inliner records on each node (the one tensor that leaves
the module's nodes). The rewritten graph reads the module's own weights.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from leakaudit.explain.base import (
    Attribution,
    CliOption,
    Explainer,
    MethodTraits,
    NotApplicable,
    batched_maps,
    normalise_per_image,
)
from leakaudit.models.predict import as_logits
from leakaudit.runtime import configure, model_device

CONV_OPS = ("aten::conv2d", "aten::_convolution", "aten::convolution")


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or getattr(module, "original_name", None) == "Conv2d"


def _is_script(module: nn.Module) -> bool:
    return isinstance(module, torch.jit.ScriptModule)


def last_conv(model: nn.Module) -> str:
    """Name of the last 2-D conv layer in registration order (``NotApplicable`` if none)."""
    names = [n for n, m in model.named_modules() if _is_conv(m)]
    if not names:
        raise NotApplicable(
            "Grad-CAM needs a 2-D convolution layer and the model has none "
            "(e.g. a vision transformer); use saliency, integrated gradients or LIME"
        )
    return names[-1]


SEQUENCES = ("Sequential", "ModuleList")
# modules after the last conv that keep the spatial layout value by value: the block goes on
KEEPS_LAYOUT = (
    "BatchNorm2d", "GroupNorm", "InstanceNorm2d", "LayerNorm2d", "ReLU", "ReLU6", "LeakyReLU",
    "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish", "Hardtanh", "Sigmoid", "Tanh",
    "PReLU", "Dropout", "Dropout2d", "Identity",
)  # fmt: skip


def _kind(module: nn.Module) -> str:
    """The class name, also for a scripted submodule (its ``original_name``)."""
    return getattr(module, "original_name", None) or type(module).__name__


def default_layer(model: nn.Module) -> str:
    """The block output at the end of the feature extractor (module docstring, rules 1–4):
    ``layer4.1`` on a ResNet-18, ``features.14`` on the bundled small CNN."""
    conv = last_conv(model)
    names = dict(model.named_modules())
    parts = conv.split(".")
    for i in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:i])
        container = names[prefix]
        if not (
            isinstance(container, nn.Sequential | nn.ModuleList) or _kind(container) in SEQUENCES
        ):
            continue
        children = [f"{prefix}.{c}" if prefix else c for c, _ in container.named_children()]
        j = children.index(".".join(parts[: i + 1]))
        while j + 1 < len(children) and _kind(names[children[j + 1]]) in KEEPS_LAYOUT:
            j += 1
        return children[j]
    return conv


def resolve_layer(model: nn.Module, layer: str) -> str:
    """``layer`` as named in ``model``; also accepted: the name inside a wrapper (``model.``)."""
    names = dict(model.named_modules())
    for candidate in (layer, f"model.{layer}", f"model.model.{layer}"):
        if candidate in names:
            return candidate
    convs = [n for n, m in names.items() if _is_conv(m)]
    raise NotApplicable(f"layer {layer!r} not found in the model; conv layers: {convs[-5:]}")


def _split_script(model: nn.Module, layer: str) -> tuple[str, str] | None:
    """(name of the outermost TorchScript module holding ``layer``, path inside it), or None
    when the layer is an eager module (hooks work)."""
    names = dict(model.named_modules())
    parts = layer.split(".")
    for i in range(len(parts) + 1):
        prefix = ".".join(parts[:i])
        if _is_script(names[prefix]):
            return prefix, ".".join(parts[i:])
    return None


def _attr_chain(value: torch._C.Value) -> str:
    names = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        value = node.input()
        node = value.node()
    return ".".join(reversed(names))


def _hierarchy(node: torch._C.Node) -> str:
    """The module path the inliner recorded for ``node`` (``layer4.1.relu``; '' at the top)."""
    return re.sub(r"\([^()]*\)", "", node.getModuleHierarchy())


def _conv_output(g: torch._C.Graph, path: str) -> torch._C.Value:
    want = f"{path}.weight" if path else "weight"
    conv = [n for n in g.nodes() if n.kind() in CONV_OPS and _attr_chain(n.inputsAt(1)) == want]
    if len(conv) != 1:
        raise NotApplicable(
            f"Grad-CAM: cannot find the call of conv layer {path!r} in the TorchScript graph "
            f"({len(conv)} matches); pass another --layer"
        )
    return conv[0].output()


def _module_output(g: torch._C.Graph, path: str) -> torch._C.Value:
    """The tensor that leaves module ``path``'s inlined nodes (the last one, in graph order)."""

    def inside(node: torch._C.Node) -> bool:
        h = _hierarchy(node)
        return h == path or h.startswith(f"{path}.")

    leaving = [
        v
        for n in g.nodes()
        if inside(n)
        for v in n.outputs()
        if isinstance(v.type(), torch._C.TensorType) and any(not inside(u.user) for u in v.uses())
    ]
    if not path or not leaving:
        raise NotApplicable(
            f"Grad-CAM: cannot find the output of layer {path!r} in the TorchScript graph; "
            "pass a conv layer as --layer"
        )
    return leaving[-1]


def tap_script(scripted: torch.jit.ScriptModule, path: str) -> torch._C.ScriptFunction:
    """A function ``f(module._c, x, delta) -> (output, A)`` where A is the output of the layer
    ``path`` inside ``scripted`` and the network continues with A + delta."""
    g = scripted.forward.graph.copy()
    torch._C._jit_pass_inline(g)
    module = dict(scripted.named_modules()).get(path)
    is_conv = module is not None and _is_conv(module)
    act = _conv_output(g, path) if is_conv or not path else _module_output(g, path)
    node = act.node()
    delta = g.addInput("delta")
    delta.setType(act.type())
    one = g.insertConstant(1)
    add = g.create("aten::add", [act, delta, one])
    add.insertAfter(node)
    one.node().moveBefore(add)
    add.output().setType(act.type())
    act.replaceAllUsesAfterNodeWith(add, add.output())
    out = next(iter(g.outputs()))
    g.eraseOutput(0)
    tup = g.create("prim::TupleConstruct", [out, act])
    tup.output().setType(torch._C.TupleType([out.type(), act.type()]))
    g.appendNode(tup)
    g.registerOutput(tup.output())
    torch._C._jit_pass_lint(g)
    return torch._C._create_function_from_graph(f"gradcam_{path.replace('.', '_')}", g)


class _ScriptTap(nn.Module):
    """Stands in for a TorchScript submodule during a Grad-CAM pass: runs the tapped graph with
    the current ``delta`` and keeps the layer's activation."""

    def __init__(self, scripted: torch.jit.ScriptModule, fn: torch._C.ScriptFunction) -> None:
        super().__init__()
        self.scripted = scripted
        self.fn = fn
        self.delta: torch.Tensor | None = None
        self.act: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delta is None:  # shape probe: a broadcast zero fits any activation
            self.delta = torch.zeros(1, 1, 1, 1, device=x.device, dtype=x.dtype)
        out, self.act = self.fn(self.scripted._c, x, self.delta)
        return out


class GradCam(Explainer):
    name = "gradcam"
    reduction = "ReLU(sum_k alpha_k A_k) at the layer, bilinear upsampling, per-image max-norm"
    traits = MethodTraits(
        layer=True,
        needs="a 2-D convolution layer",
        cli=(
            CliOption(
                "--layer",
                "layer",
                None,
                "Grad-CAM layer name [default: the last block's output, e.g. layer4.1 on a "
                "ResNet-18; see docs/methods.md].",
                type=str,
            ),
        ),
    )

    def __init__(self, model: torch.nn.Module, layer: str | None = None, batch_size: int = 128):
        layer = resolve_layer(model, layer) if layer else default_layer(model)
        super().__init__(model, layer=layer)
        self.batch_size = batch_size
        self._script = _split_script(self.model, layer)
        self._tap: _ScriptTap | None = None
        if self._script is not None:
            root, path = self._script
            scripted = dict(self.model.named_modules())[root]
            self._tap = _ScriptTap(scripted, tap_script(scripted, path))

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, activation A, tensor whose gradient is ∂/∂A) for a batch."""
        if self._tap is None:
            layer = dict(self.model.named_modules())[self.params["layer"]]
            box: dict[str, torch.Tensor] = {}

            def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
                box["act"] = out
                return out * 1  # the net goes on with a copy: an in-place ReLU cannot alter A

            handle = layer.register_forward_hook(hook)
            try:
                logits = self.model(x)
            finally:
                handle.remove()
            return logits, box["act"], box["act"]
        tap = self._tap
        root = self._script[0] if self._script else ""
        tap.delta = None
        if root:  # an eager wrapper around the scripted model: swap the tap in for one call
            parent_name, _, attr = root.rpartition(".")
            parent = dict(self.model.named_modules())[parent_name]
            with torch.no_grad():
                _swap(parent, attr, tap, lambda: self.model(x))
            tap.delta = torch.zeros_like(tap.act).requires_grad_(True)
            logits = _swap(parent, attr, tap, lambda: self.model(x))
        else:
            with torch.no_grad():
                tap(x)
            tap.delta = torch.zeros_like(tap.act).requires_grad_(True)
            logits = tap(x)
        return logits, tap.act, tap.delta

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        size = tuple(images.shape[1:3])

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            with torch.enable_grad():
                logits, act, wrt = self._run(x)
                if act.dim() != 4:
                    raise NotApplicable(
                        f"Grad-CAM layer {self.params['layer']!r} has no spatial layout "
                        f"(output shape {tuple(act.shape)})"
                    )
                score = as_logits(logits).float().gather(1, t[:, None]).sum()
                grad = torch.autograd.grad(score, wrt)[0]
            alpha = grad.detach().float().mean(dim=(2, 3), keepdim=True)
            cam = (alpha * act.detach().float()).sum(dim=1, keepdim=True).clamp_min(0)
            up = nn.functional.interpolate(cam, size=size, mode="bilinear", align_corners=False)
            return up[:, 0].clamp_min(0).contiguous().cpu().numpy()

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)


def _swap(parent: nn.Module, attr: str, tap: nn.Module, call):
    """Run ``call()`` with ``parent.<attr>`` replaced by ``tap`` (restored afterwards)."""
    saved = parent._modules[attr]
    parent._modules[attr] = tap
    try:
        return call()
    finally:
        parent._modules[attr] = saved
