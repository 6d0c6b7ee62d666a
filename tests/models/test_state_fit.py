"""models.weights.state_fit, the one key-and-shape check behind every loader, and load_component's words."""

import pytest
import torch

from comfyui_portraittalk.models.files.weights import ModelFileError, load_component, state_fit


def _module():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def test_an_exact_state_fits():
    module = _module()
    fit = state_fit(module.state_dict(), module.state_dict())
    assert fit.exact and fit.missing == [] and fit.unexpected == [] and fit.mismatched == {}


def test_missing_unexpected_and_mismatched_keys_are_named_in_order():
    own = _module().state_dict()
    state = {"extra.b": torch.zeros(1), "1.weight": torch.zeros(2, 5), "0.weight": torch.zeros(4, 3),
             "extra.a": torch.zeros(1)}
    fit = state_fit(own, state)
    assert not fit.exact
    assert fit.missing == ["0.bias", "1.bias"]  # the module's order
    assert fit.unexpected == ["extra.b", "extra.a"]  # the state's order
    assert fit.mismatched == {"1.weight": ((2, 5), (2, 4))}


def test_load_component_refuses_a_misfit_with_every_kind_of_problem_and_loads_a_fit():
    module = _module()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state.pop("0.bias")
    state["1.weight"] = torch.zeros(2, 5)
    state["stray"] = torch.zeros(1)
    with pytest.raises(ModelFileError, match=r"net does not match its config: 1 missing keys: 0.bias; "
                                             r"1 unexpected keys: stray; 1 shape mismatches: "
                                             r"1.weight: file \(2, 5\), model \(2, 4\)"):
        load_component(module, state, "net", "file.safetensors")
    good = {k: torch.full_like(v, 0.5) for k, v in module.state_dict().items()}
    load_component(module, good, "net", "file.safetensors")
    assert all(torch.equal(v, torch.full_like(v, 0.5)) for v in module.state_dict().values())
