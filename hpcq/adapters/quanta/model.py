"""`get_quanta_model`: put QuanTA adapters into any model built of `nn.Linear`, PEFT style.

    model = get_quanta_model(base, QuantaConfig(target_modules=["query", "value"], axes=(8, 8, 6),
                                                modules_to_save=["classifier"]))
    ...train...
    model.save_pretrained("adapter/")        # adapter_config.json + adapter_model.safetensors, adapter only
    model = QuantaModel.from_pretrained(fresh_base, "adapter/")
    plain = model.merge_and_unload()         # plain nn.Linear layers again: no inference overhead

The adapter file holds θ, the frozen θ0 and the `modules_to_save` weights, never the base model's weights; the
JSON config records the base model's class and every adapted layer's shape and base-weight norms, so loading into
a model of another class, shape or checkpoint fails clearly instead of running a meaningless combination.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from hpcq.adapters.quanta.axes import check_axes
from hpcq.adapters.quanta.config import QuantaConfig
from hpcq.adapters.quanta.layer import QuantaLinear
from hpcq.adapters.targets import find_modules, require_linear
from hpcq.atomic import atomic_path
from hpcq.errors import ConfigError, DataError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FORMAT = "hpcq-quanta/1"
#: relative difference of base-weight norms still taken as the same checkpoint (another dtype of it rounds)
BASE_WEIGHTS_RTOL = 1e-3


def _layer_shapes(layers: dict[str, QuantaLinear]) -> dict[str, dict[str, Any]]:
    return {name: {"in_features": layer.in_features, "out_features": layer.out_features, "axes": list(layer.axes),
                   "base_weight_norms": _base_norms(layer)}
            for name, layer in layers.items()}


@torch.no_grad()
def _base_norms(layer: QuantaLinear) -> list[float]:
    """L2 and L1 norm of the layer's W0 (also while its update is merged into the weight): a fingerprint of the
    checkpoint that survives a change of dtype or device, unlike a hash of the bytes."""
    weight = layer.base_layer.weight.double()
    if layer.merged:
        weight = weight - layer.delta_weight().double()
    return [float(weight.norm()), float(weight.abs().sum())]


class QuantaModel(nn.Module):
    """A model whose targeted linear layers are `QuantaLinear`; calls and unknown attributes go to the model."""

    def __init__(self, model: nn.Module, config: QuantaConfig):
        super().__init__()
        self.base_model = model
        self.quanta_config = config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @property
    def quanta_layers(self) -> dict[str, QuantaLinear]:
        """Adapted layers by their name in the base model."""
        return {name: module for name, module in self.base_model.named_modules() if isinstance(module, QuantaLinear)}

    def _saved_prefixes(self) -> list[str]:
        if not self.quanta_config.modules_to_save:
            return []
        return [name + "." for name, _ in find_modules(self.base_model, self.quanta_config.modules_to_save,
                                                       "modules_to_save")]

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """θ, θ0 and the `modules_to_save` weights, keyed by their names in the base model."""
        prefixes = self._saved_prefixes()
        return {key: value for key, value in self.base_model.state_dict().items()
                if ".quanta_gates." in key or ".quanta_frozen_" in key or key.startswith(tuple(prefixes))}

    def parameter_counts(self) -> dict[str, int]:
        """adapter (the gates), head (`modules_to_save`), trainable and total parameters."""
        adapter = sum(layer.n_parameters for layer in self.quanta_layers.values())
        prefixes = tuple(self._saved_prefixes())
        head = sum(p.numel() for name, p in self.base_model.named_parameters() if name.startswith(prefixes))
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"adapter": adapter, "head": head, "trainable": trainable, "total": total}

    def merge(self) -> None:
        """Fold every update into its base weight (for inference); `unmerge` undoes it."""
        for layer in self.quanta_layers.values():
            layer.merge()

    def unmerge(self) -> None:
        """Take every update out of its base weight again."""
        for layer in self.quanta_layers.values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """The base model with each update merged and each `QuantaLinear` replaced by its plain `nn.Linear`."""
        for name, layer in self.quanta_layers.items():
            layer.merge()
            _replace(self.base_model, name, layer.base_layer)
        return self.base_model

    def save_pretrained(self, directory: str | Path) -> dict[str, int]:
        """Write `adapter_config.json` and `adapter_model.safetensors` (adapter only); returns bytes per file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "base_model_class": type(self.base_model).__name__,
            "config": self.quanta_config.to_dict(),
            "layers": _layer_shapes(self.quanta_layers),
        }
        tensors = {key: value.detach().contiguous().cpu() for key, value in self.adapter_state_dict().items()}
        with atomic_path(directory / ADAPTER_WEIGHTS) as tmp:
            save_file(tensors, tmp, metadata={"format": FORMAT})
        with atomic_path(directory / ADAPTER_CONFIG) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        return {name: (directory / name).stat().st_size for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)}

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | Path) -> QuantaModel:
        """Adapt `model` as recorded in `directory` and load the saved adapter weights into it."""
        directory = Path(directory)
        meta = _read_meta(directory)
        if type(model).__name__ != meta["base_model_class"]:
            raise ConfigError(
                f"adapter {directory} was trained on a {meta['base_model_class']}, but this model is a "
                f"{type(model).__name__}; load it into a {meta['base_model_class']} of the checkpoint it was trained on"
            )
        _check_shapes(model, meta["layers"], directory)
        adapted = get_quanta_model(model, QuantaConfig.from_dict(meta["config"]))
        extra = sorted(set(adapted.quanta_layers) - set(meta["layers"]))
        if extra:
            raise ConfigError(
                f"adapter {directory} was trained on {len(meta['layers'])} layers, but its target_modules select "
                f"{len(adapted.quanta_layers)} in this model (e.g. {extra[0]!r}); load it into the model it was "
                f"trained with"
            )
        _check_base_weights(adapted.quanta_layers, meta["layers"], directory)
        try:
            tensors = load_file(directory / ADAPTER_WEIGHTS)
        except SafetensorError as err:
            raise DataError(f"{directory / ADAPTER_WEIGHTS} is not a readable safetensors file ({err}): it is "
                            f"truncated or damaged; copy it again or save the adapter again") from None
        expected = adapted.adapter_state_dict()
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ConfigError(
                f"adapter weights in {directory} do not fit this model: missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}; load it into the model it was trained with"
            )
        for key, value in tensors.items():
            if value.shape != expected[key].shape:
                raise ConfigError(
                    f"adapter tensor {key!r} in {directory} has shape {tuple(value.shape)}, this model needs "
                    f"{tuple(expected[key].shape)}; load it into the model it was trained with"
                )
        adapted.base_model.load_state_dict(tensors, strict=False)
        return adapted


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _read_meta(directory: Path) -> dict[str, Any]:
    for file_name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (directory / file_name).is_file():
            raise ConfigError(f"{directory / file_name} does not exist; pass the folder written by save_pretrained")
    try:
        meta = json.loads((directory / ADAPTER_CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{directory / ADAPTER_CONFIG} is not valid JSON ({err}): it is truncated or damaged; "
                        f"copy it again or save the adapter again") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{directory / ADAPTER_CONFIG} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _check_shapes(model: nn.Module, layers: dict[str, dict[str, Any]], directory: Path) -> None:
    """ConfigError when a recorded layer is missing from `model` or has another shape."""
    modules = dict(model.named_modules())
    for name, shape in layers.items():
        module = modules.get(name)
        if not isinstance(module, nn.Linear):
            raise ConfigError(
                f"adapter {directory} adapts layer {name!r}, which this {type(model).__name__} does not have as an "
                f"nn.Linear; load it into the model it was trained with"
            )
        if (module.in_features, module.out_features) != (shape["in_features"], shape["out_features"]):
            raise ConfigError(
                f"adapter {directory} was trained on layer {name!r} of shape {shape['in_features']}→"
                f"{shape['out_features']}, but in this model it is {module.in_features}→{module.out_features}; "
                f"load it into a model of the shape it was trained with"
            )


def _check_base_weights(layers: dict[str, QuantaLinear], saved: dict[str, dict[str, Any]], directory: Path) -> None:
    """ConfigError when an adapted layer's W0 is not the one the adapter was trained on (adapters saved before
    the norms were recorded skip this check)."""
    for name, layer in layers.items():
        recorded = saved[name].get("base_weight_norms")
        here = _base_norms(layer)
        if recorded and not all(math.isclose(a, b, rel_tol=BASE_WEIGHTS_RTOL) for a, b in zip(here, recorded)):
            raise ConfigError(
                f"adapter {directory} was trained on other base weights: layer {name!r} has weight norm "
                f"{here[0]:.6g} here, {recorded[0]:.6g} when it was saved; load it into the checkpoint it was "
                f"trained on"
            )


def get_quanta_model(model: nn.Module, config: QuantaConfig) -> QuantaModel:
    """Replace every layer `config.target_modules` selects by a `QuantaLinear` and freeze everything else except
    the gates and `config.modules_to_save`. The model is changed in place and returned wrapped; every target is
    checked first, so a bad config leaves the model untouched."""
    if any(isinstance(module, QuantaLinear) for module in model.modules()):
        raise ConfigError("this model already has QuanTA adapters; adapt a fresh base model (or merge_and_unload first)")
    targets = find_modules(model, config.target_modules)
    saved = find_modules(model, config.modules_to_save, "modules_to_save") if config.modules_to_save else []
    for name, module in targets:
        require_linear(module, name)
        check_axes(config.axes_for(module.in_features, module.out_features), module.in_features,
                   module.out_features, name)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, module in targets:
        axes = config.axes_for(module.in_features, module.out_features)
        _replace(model, name, QuantaLinear(module, axes, config.dropout, name=name, path=config.path))
    for _, module in saved:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return QuantaModel(model, config)

