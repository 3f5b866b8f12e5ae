"""Reference check: surgkit's Grad-CAM against pytorch-grad-cam (PyPI ``grad-cam``), same model and input.

pytorch-grad-cam needs torchvision, which does not import with the torch this project pins, so it is
not a dependency and this comparison is not part of the test suite (the suite's Grad-CAM oracles —
closed form and hooked autograd — always run). Run it where both are installed::

    pip install grad-cam torchvision   # in an environment where torchvision imports
    python bench/gradcam_reference.py [--size tiny|base]

or, in this project's environment, with grad-cam and ttach installed without dependencies and
torchvision replaced by an empty stand-in (pytorch-grad-cam imports it in helper modules; GradCAM's
computation does not use it)::

    pip install --no-deps grad-cam ttach --target /tmp/gc
    PYTHONPATH=/tmp/gc python bench/gradcam_reference.py --stub-torchvision

Prints JSON: the max |difference| of the two normalised maps (target < 1e-5) and, as a control, the
difference when pytorch-grad-cam explains another layer (it must be large, or the check proves nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grounding import surgvlp_adapter  # noqa: E402


class _Embed(torch.nn.Module):
    def __init__(self, image):
        super().__init__()
        self.image = image

    def forward(self, x):
        return self.image(x)


def _reference(model, layer, x, t):
    from pytorch_grad_cam import GradCAM

    targets = [lambda out, i=i: F.cosine_similarity(out, t[i], dim=0) for i in range(len(x))]
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=targets))


def _stub_torchvision() -> None:
    """Empty stand-ins for the torchvision names pytorch-grad-cam imports at module level."""
    import types

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stand-in: not available")

    names = {
        "torchvision": {},
        "torchvision.transforms": {"Compose": unavailable, "Normalize": unavailable, "ToTensor": unavailable},
        "torchvision.transforms.functional": {"resize": unavailable},
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "base"], default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stub-torchvision", action="store_true", help="see the module docstring")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    adapter = surgvlp_adapter(args.size)  # imports transformers before any stand-in exists
    if args.stub_torchvision:
        _stub_torchvision()
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError as e:
        raise SystemExit(
            f"pytorch-grad-cam is not importable here ({e}); see this script's docstring"
        ) from None
    from surgkit.grounding.heatmaps import gradcam_map, upsample_and_normalise

    model = _Embed(adapter.model.image).eval()
    side = adapter.model.config.image_size
    x = torch.randn(2, 3, side, side * 3 // 2)
    t = F.normalize(torch.randn(2, model.image.proj.out_features), dim=-1)
    feats = model.image.features(x).detach().requires_grad_(True)
    y = F.cosine_similarity(model.image.embed_from_features(feats), t, dim=-1)
    (g,) = torch.autograd.grad(y.sum(), feats)
    ours = upsample_and_normalise(gradcam_map(feats, g), tuple(x.shape[-2:]))
    ref = _reference(model, model.image.trunk.layer4, x, t)
    control = _reference(model, model.image.trunk.layer3, x, t)
    report = {
        "model": adapter.name,
        "input": list(x.shape),
        "max_abs_diff": float((ours.detach() - ref).abs().max()),
        "target": 1e-5,
        "control_other_layer_max_abs_diff": float((ours.detach() - control).abs().max()),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
