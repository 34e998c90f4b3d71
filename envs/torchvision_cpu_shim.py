"""Lets the CUDA-only torchvision 0.28.0 wheel import beside a CPU build of torch 2.13.0.

PyPI has no CPU torchvision for torch 2.13; the CUDA wheel's extension cannot load, and its Python side then
fails at import with "operator torchvision::nms does not exist". timm, segment-anything and every nnU-Net
trainer but the plain one import torchvision. Defining the two operator schemas before torchvision loads is
enough for those imports; torchvision's compiled ops (nms, roi_align, ...) stay unavailable, and nothing on
hnseg's code path uses them.

envs/setup.sh installs this file into site-packages with a one-line .pth that imports it. It costs a few
microseconds at interpreter start: torch is only imported when torchvision is.
"""

import sys


class _TorchvisionCpuShim:
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        if torch.version.cuda is None:
            try:
                lib = torch.library.Library("torchvision", "FRAGMENT")
                lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                globals()["_library"] = lib
            except RuntimeError:  # already defined (a real CPU torchvision, or a second import)
                pass
        return None


if not any(type(f).__name__ == "_TorchvisionCpuShim" for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionCpuShim())
