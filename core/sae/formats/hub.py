"""Hub ids -> local folders, through huggingface_hub's cache (imported only when used).

hf:<owner>/<repo>[/<folder>][@<revision>]   a folder of a Hugging Face repo
sae_lens:<release>/<sae_id>                 a SAELens release id (needs the sae-lens package
                                            for its release table)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.sae.model import SAEError

PREFIXES = ("hf:", "sae_lens:", "saelens:")


def is_hub_spec(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIXES)


def resolve_hub(spec: str) -> Path:
    """Download (or reuse the cached copy of) what `spec` names; returns the local folder."""
    scheme, _, rest = spec.partition(":")
    if scheme == "hf":
        repo_id, folder, revision = _split_hf(spec, rest)
    else:
        repo_id, folder = _saelens_release(spec, rest)
        revision = None
    root = _download(spec, repo_id, folder, revision)
    local = root / folder if folder else root
    if not local.exists():
        raise SAEError(f"{spec}: folder {folder!r} not found in {repo_id}")
    return local


def _split_hf(spec: str, rest: str) -> tuple[str, str, str | None]:
    rest, _, revision = rest.partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise SAEError(f"{spec}: expected hf:<owner>/<repo>[/<folder>][@<revision>]")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision or None


def _saelens_release(spec: str, rest: str) -> tuple[str, str]:
    release, _, sae_id = rest.partition("/")
    if not release or not sae_id:
        raise SAEError(f"{spec}: expected sae_lens:<release>/<sae_id>")
    lookup = _saelens_lookup(spec)
    try:
        repo_id, folder = lookup(release, sae_id)
    except Exception as e:  # SAELens raises plain ValueError/KeyError for unknown ids
        raise SAEError(f"{spec}: not a known SAELens release/sae_id ({e})") from e
    return str(repo_id), str(folder)


def _saelens_lookup(spec: str) -> Any:
    try:  # SAELens >= 6
        from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name
    except ImportError:
        try:  # older SAELens
            from sae_lens.toolkit.pretrained_saes_directory import (  # type: ignore[no-redef]
                get_repo_id_and_folder_name,
            )
        except ImportError as e:
            raise SAEError(
                f"{spec}: resolving SAELens release ids needs the sae-lens package "
                "(pip install sae-lens), or name the files directly: hf:<owner>/<repo>/<folder>"
            ) from e
    return get_repo_id_and_folder_name


def _download(spec: str, repo_id: str, folder: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise SAEError(f"{spec}: hub ids need huggingface_hub (pip install huggingface_hub)") from e
    try:
        local = snapshot_download(
            repo_id, revision=revision, allow_patterns=[f"{folder}/*"] if folder else None
        )
    except Exception as e:  # offline, unknown repo, gated repo: all reach the user the same way
        raise SAEError(
            f"{spec}: could not fetch {repo_id}{'/' + folder if folder else ''} from the "
            f"Hugging Face Hub ({type(e).__name__}: {e}). Offline? Download it on a machine "
            "with network and pass the local folder, or set HF_HUB_OFFLINE=1 to use a cached copy."
        ) from e
    return Path(local)
