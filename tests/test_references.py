"""Model references resolved once (backend.references): every explicit form, bare names that are
refused as ambiguous, the expected artifact kind, and what older versions stored.

Real workspaces (SQLite) and real folders; no model is loaded (a hub id is only checked when a
job loads it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.jobs import configs, store
from backend.jobs.configs import ConfigError
from backend.jobs.models import Artifact
from backend.references import ArtifactKind, open_reference, resolve_reference
from backend.workspace import Workspace


def folder(ws: Workspace, name: str) -> Path:
    path = ws.home / "models" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def register(ws: Workspace, kind: ArtifactKind, name: str) -> Artifact:
    return store.add_artifact(ws, None, kind, name, folder(ws, name.replace("/", "--")), {"k": kind.value})


def resolve(ws: Workspace, ref: str, expected: ArtifactKind | None = ArtifactKind.captioner) -> str:
    return resolve_reference(ws, ref, expected=expected, field="captioner")


# --------------------------------------------------------------------------- each form


def test_artifacts_by_name_id_and_explicit_prefix(ws: Workspace) -> None:
    old = register(ws, ArtifactKind.captioner, "tiny-blip")
    new = register(ws, ArtifactKind.captioner, "tiny-blip")
    # a name means the newest of that name and is stored as typed (tables show it as the user reads it)
    assert resolve(ws, "tiny-blip") == resolve(ws, "artifact:tiny-blip") == "tiny-blip"
    assert resolve(ws, f" artifact:{old.id} ") == resolve(ws, str(old.id)) == str(old.id)
    model = open_reference(ws, "tiny-blip")
    assert (model.origin, model.label, model.artifact_id) == ("artifact", "tiny-blip", new.id)
    assert model.source == str(store.artifact_path(ws, new)) and model.meta == {"k": "captioner"}
    assert open_reference(ws, f"artifact:{old.id}").artifact_id == old.id
    with pytest.raises(ConfigError, match=r"captioner 'artifact:nope': no artifact 'nope'"):
        resolve(ws, "artifact:nope")
    with pytest.raises(ConfigError, match=r"no artifact with id 99 \(a hub id would be written hf:99\)"):
        resolve(ws, "99")


def test_hub_ids_bare_or_explicit(ws: Workspace) -> None:
    for ref in ("org/model", "hf:org/model", " hf:org/model "):
        assert resolve(ws, ref) == "org/model"  # nothing else has that name: stored bare
    assert resolve(ws, "gpt2", ArtifactKind.upsampler) == "gpt2"  # one-word hub ids too
    model = open_reference(ws, "hf:org/model")
    assert (model.origin, model.label, model.source, model.artifact) == (
        "hub",
        "org/model",
        "org/model",
        None,
    )
    with pytest.raises(ConfigError, match=r"'hf:org/a/b': 'org/a/b' is not a hub id"):
        resolve(ws, "hf:org/a/b")
    with pytest.raises(ConfigError, match="is not an artifact, an existing folder, or a hub id"):
        resolve(ws, "a model")


def test_local_folders_become_absolute_paths(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder(ws, "mine")
    (tmp_path / "here").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    absolute = str((ws.home / "models" / "mine").resolve())
    # relative to the workspace (org/name-shaped: a folder that exists is the folder), or explicit
    assert resolve(ws, "models/mine") == resolve(ws, absolute) == absolute
    assert resolve(ws, "./here") == resolve(ws, "here") == str((tmp_path / "here").resolve())
    model = open_reference(ws, absolute)
    assert (model.origin, model.source, model.artifact) == ("path", absolute, None)
    with pytest.raises(ConfigError, match=r"captioner './missing': no such folder"):
        resolve(ws, "./missing")
    with pytest.raises(ConfigError, match="is a file; give the model's folder"):
        resolve(ws, "weights.bin")
    with pytest.raises(ConfigError, match="captioner is required"):
        resolve(ws, "  ")


# --------------------------------------------------------------------------- ambiguity


def test_an_artifact_named_like_a_hub_id_no_longer_hides_the_hub_model(ws: Workspace) -> None:
    """The old resolvers took an artifact first, so ``org/sd`` named the artifact and the hub
    model of that name could not be reached; now the bare name is refused, naming both forms."""
    artifact = register(ws, ArtifactKind.t2i, "org/sd")
    for check in (
        lambda: resolve_reference(ws, "org/sd", expected=ArtifactKind.t2i, field="base"),
        lambda: configs.resolve_model_reference(ws, "org/sd", "base"),  # the old entry point (the old code returned the artifact)
    ):  # fmt: skip
        with pytest.raises(ConfigError) as err:
            check()
        message = str(err.value)
        assert "base 'org/sd' is ambiguous" in message
        assert f"artifact:org/sd for the t2i artifact (id {artifact.id})" in message
        assert "hf:org/sd for the hub model" in message
    # the explicit forms are stored explicitly (the bare one would be ambiguous) and open as written
    assert resolve_reference(ws, "hf:org/sd", expected=ArtifactKind.t2i, field="base") == "hf:org/sd"
    assert (
        resolve_reference(ws, "artifact:org/sd", expected=ArtifactKind.t2i, field="base") == "artifact:org/sd"
    )
    assert open_reference(ws, "hf:org/sd").source == "org/sd"
    assert open_reference(ws, "artifact:org/sd").artifact_id == artifact.id
    # a job never guesses either: a stored bare name that became ambiguous is refused too
    with pytest.raises(ConfigError, match="ambiguous"):
        open_reference(ws, "org/sd", field="base")


def test_an_artifact_named_like_a_local_folder_is_ambiguous(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = register(ws, ArtifactKind.captioner, "blip")
    (tmp_path / "blip").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"'blip' is ambiguous; write artifact:blip .* or /.*blip for the local folder"
    ):
        resolve(ws, "blip")
    assert resolve(ws, "artifact:blip") == "artifact:blip"
    assert open_reference(ws, "artifact:blip").artifact_id == artifact.id
    assert resolve(ws, "./blip") == str((tmp_path / "blip").resolve())


# --------------------------------------------------------------------------- artifact kinds


def test_an_artifact_of_the_wrong_kind_is_refused(ws: Workspace) -> None:
    register(ws, ArtifactKind.captioner, "cap")
    register(ws, ArtifactKind.upsampler, "lm")
    with pytest.raises(ConfigError, match=r"base 'cap' is a captioner artifact \(id \d+\), not a t2i one"):
        resolve_reference(ws, "cap", expected=ArtifactKind.t2i, field="base")
    with pytest.raises(ConfigError, match=r"upsampler 'artifact:cap' is a captioner artifact"):
        resolve_reference(ws, "artifact:cap", expected=ArtifactKind.upsampler, field="upsampler")
    with pytest.raises(ConfigError, match="is a upsampler artifact"):
        open_reference(ws, "lm", expected=ArtifactKind.captioner, field="captioner")
    assert resolve_reference(ws, "lm", expected=ArtifactKind.upsampler, field="upsampler") == "lm"
    assert resolve_reference(ws, "cap", expected=None, field="x") == "cap"  # no kind asked: any artifact
    # the workspace check of a config names the field and the kind it wants
    with pytest.raises(ConfigError, match=r"checkpoint 'cap' is a captioner artifact"):
        configs.check_workspace(ws, "generate", configs.make_config("generate", {"checkpoints": ["cap"]}))


def test_artifact_kinds_are_the_stored_strings(ws: Workspace) -> None:
    assert [k.value for k in ArtifactKind] == ["captioner", "t2i", "upsampler"]
    assert configs.CAPTIONER_ARTIFACT == "captioner" and configs.T2I_ARTIFACT == "t2i"
    artifact = register(ws, ArtifactKind.t2i, "pipe")
    assert store.list_artifacts(ws, kind="t2i")[0].id == artifact.id  # stored as plain text
    assert type(store.get_artifact(ws, "pipe").kind) is str


# --------------------------------------------------------------------------- stored configs


def test_what_older_versions_stored_still_opens(ws: Workspace) -> None:
    """Configs stored before explicit forms: bare artifact names and ids (captioner_choices stores
    an id where names repeat), absolute folders and bare hub ids."""
    first = register(ws, ArtifactKind.captioner, "tuned")
    register(ws, ArtifactKind.captioner, "tuned")
    path = str(folder(ws, "imported").resolve())
    assert open_reference(ws, "tuned").label == "tuned"
    assert open_reference(ws, str(first.id)).artifact_id == first.id
    assert open_reference(ws, path).source == path
    hub = open_reference(ws, "Salesforce/blip-image-captioning-base")
    assert (hub.origin, hub.source) == ("hub", "Salesforce/blip-image-captioning-base")
    # every value the Runs tab offers for a captioner resolves to the artifact it names
    for _label, value in configs.captioner_choices(ws):
        assert resolve(ws, value) == value
        assert open_reference(ws, value).artifact is not None


def test_what_resolve_stores_opens_to_the_same_model(ws: Workspace, tmp_path: Path) -> None:
    register(ws, ArtifactKind.t2i, "org/x")
    register(ws, ArtifactKind.t2i, "plain")
    folder(ws, "f")
    for ref in ("hf:org/x", "artifact:org/x", "plain", "artifact:plain", "org/y", "models/f", "hf:org/y"):
        direct = open_reference(ws, ref, expected=ArtifactKind.t2i)
        stored = resolve_reference(ws, ref, expected=ArtifactKind.t2i, field="base")
        again = open_reference(ws, stored, expected=ArtifactKind.t2i)
        assert (again.origin, again.source, again.artifact_id) == (
            direct.origin,
            direct.source,
            direct.artifact_id,
        )
