"""Dense-feature backbones behind one contract (see :mod:`.contract`) and a registry (see :mod:`.registry`)."""
from .contract import BackboneContract, DenseBackbone, OutputKind, Preprocessing
from .registry import BackboneSpec, LoadedBackbone, WeightsInfo, create_auto, create_backbone, get_spec, list_backbones
from .weights import PretrainedSource, load_state_dict, resolve_weights

__all__ = ["BackboneContract", "BackboneSpec", "DenseBackbone", "LoadedBackbone", "OutputKind", "Preprocessing",
           "PretrainedSource", "WeightsInfo", "create_auto", "create_backbone", "get_spec", "list_backbones",
           "load_state_dict", "resolve_weights"]
