"""Trace metadata about where the code runs (user, source file, git), resolved once per process."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from flowtel.entities import TraceMetadataKey


def resolve_environment_metadata() -> dict[str, str]:
    source = _source_name()
    metadata = {
        TraceMetadataKey.USER: _user(),
        TraceMetadataKey.SOURCE_NAME: source,
        TraceMetadataKey.SOURCE_TYPE: "NOTEBOOK" if _in_notebook() else "LOCAL",
    }
    commit, branch, url = _git_info(Path(source).resolve().parent if source else Path.cwd())
    metadata[TraceMetadataKey.GIT_COMMIT] = commit
    metadata[TraceMetadataKey.GIT_BRANCH] = branch
    metadata[TraceMetadataKey.GIT_REPO_URL] = url
    return metadata


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database (containers): metadata is optional
        return ""


def _source_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return argv0 if argv0 and os.path.exists(argv0) else (argv0 or "<console>")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001 - IPython internals vary by version
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def _git_info(start: Path) -> tuple[str, str, str]:
    """(commit, branch, remote url) read from the .git directory, without running git."""
    try:
        git_dir = _find_git_dir(start)
        if git_dir is None:
            return "", "", ""
        head = (git_dir / "HEAD").read_text().strip()
        branch, commit = "", head
        if head.startswith("ref: "):
            ref = head[5:]
            branch = ref.removeprefix("refs/heads/")
            commit = _read_ref(git_dir, ref)
        return commit, branch, _remote_url(git_dir)
    except OSError:
        return "", "", ""


def _find_git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():
            text = candidate.read_text().strip()
            if text.startswith("gitdir: "):
                return (folder / text[8:]).resolve()
    return None


def _read_ref(git_dir: Path, ref: str) -> str:
    path = git_dir / ref
    if path.is_file():
        return path.read_text().strip()
    packed = git_dir / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return ""


def _remote_url(git_dir: Path) -> str:
    config = git_dir / "config"
    if not config.is_file():
        return ""
    in_origin = False
    for line in config.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_origin = stripped == '[remote "origin"]'
        elif in_origin and stripped.startswith("url"):
            url = stripped.split("=", 1)[1].strip()
            return _strip_credentials(url)
    return ""


def _strip_credentials(url: str) -> str:
    # https://user:token@host/repo -> https://host/repo: never record credentials.
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
