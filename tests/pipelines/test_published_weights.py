"""`prediff download weights`: official-format `.pt` files served on 127.0.0.1 under the real names by imitations of
the real hosts — a SharePoint whose links answer 404, a Google Drive that answers with its confirmation page, sets a
cookie and serves the file only to the confirmed request, mirrors that answer pages or tiny files — converted into
the `sevirlr` model folder, or installed from files given with `--from`. The served networks are `tiny`-size (same
code path as the paper-size files); the release record is the real one with the sizes of these files."""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from loopback_server import Server, page_route, weight_hosts
from typer.testing import CliRunner

import prediff_models as models
from prediff.cli.app import app
from prediff.config import load_config
from prediff.io.state_dict_writer import write_state_dict
from prediff.pipelines import published_weights as pw

FILES = pw.RELEASES["sevirlr"].files
NAMES = {c: f.name for c, f in FILES.items()}
GONE = "(the official links have been gone since 2025-11)"
ERROR_PAGE = ("<!DOCTYPE html><html><head><title>Error 503 Service Unavailable</title></head><body><h1>Service "
              "Unavailable</h1><p>The server is temporarily unable to service your request.</p></body></html>")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """component → (official state dict of a tiny network, the .pt bytes, its parameter count)."""
    folder = tmp_path_factory.mktemp("pt")
    cfg = load_config("tiny")
    out = {}
    for component in ("vae", "unet", "align"):
        net = models.build(component, cfg.model_kwargs(component))
        state = models.official_state_dict(net)
        path = write_state_dict(folder / NAMES[component], state)
        out[component] = (state, path.read_bytes(), models.count_parameters(net))
    return out


def _tiny_release(official, **sizes):
    files = {c: dataclasses.replace(f, size=sizes.get(c, len(official[c][1])), parameters=official[c][2])
             for c, f in FILES.items()}
    return dataclasses.replace(pw.RELEASES["sevirlr"], preset="tiny", files=files)


@pytest.fixture
def hosts(official, monkeypatch, tmp_path):
    """The default sources on 127.0.0.1 — SharePoint (`/sharepoint/`, every link 404) and Google Drive (`/drive/`,
    with its confirmation page) — and mirrors under `/mirror/` (the files), `/mirror-html/` (an error page)."""
    monkeypatch.setitem(pw.RELEASES, "sevirlr", _tiny_release(official))
    files = {NAMES[c]: (FILES[c].gdrive, body) for c, (_, body, _) in official.items()}
    with weight_hosts(files, monkeypatch, tmp_path / "home", routes={"/mirror-html/": page_route(ERROR_PAGE)}) as srv:
        yield srv


def _download(*args):
    return CliRunner().invoke(app, ["download", "weights", *args])


def _home(tmp_path):
    return tmp_path / "home"


def _model_dir(tmp_path):
    return _home(tmp_path) / "models" / "sevirlr"


def _errors(result):
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _check_model(official):
    import prediff

    model = prediff.load_model("sevirlr")
    for component in ("vae", "unet", "align"):
        state = models.official_state_dict(model.network(component))
        want = official[component][0]
        assert set(state) == set(want)
        for key in want:
            np.testing.assert_array_equal(np.asarray(state[key]).reshape(want[key].shape), want[key])


def test_sharepoint_404_then_google_drive_installs_a_working_model(tmp_path, hosts, official, radar_file):
    """The default sources as they are today: every SharePoint link 404, Drive answers its confirmation page; the
    form is followed with the page's cookie and the model forecasts."""
    result = _download()
    assert result.exit_code == 0, result.output
    for name in NAMES.values():
        assert f"SharePoint answered 404 for {name} {GONE}; trying Google Drive…" in result.output
    assert sorted(p.name for p in _model_dir(tmp_path).iterdir()) == ["align.ckpt", "model.json", "unet.ckpt",
                                                                        "vae.ckpt"]
    card = json.loads((_model_dir(tmp_path) / "model.json").read_text())
    source = card["sources"]["unet"]
    assert source["source"] == "gdrive" and source["url"] == f"{hosts.url}drive/uc?export=download&id=" \
                                                             f"{FILES['unet'].gdrive}"
    assert source["sha256"] == hashlib.sha256(official["unet"][1]).hexdigest()
    assert card["paper_scores"]["CSI-M"] == 0.41 and card["expected_parameters"]["unet"] == 136_817_538
    assert [file_id for file_id, _ in hosts.drive.served] == [FILES[c].gdrive for c in ("vae", "unet", "align")]
    sharepoint = [r["path"] for r in hosts.requests if r["path"].startswith("/sharepoint/")]
    assert sharepoint[0] == f"/sharepoint/{FILES['vae'].sharepoint}&download=1"
    assert _tree(_home(tmp_path) / "downloads") == []  # sources removed after conversion, staging published
    _check_model(official)
    listed = CliRunner().invoke(app, ["models", "--json"])
    assert "sevirlr" in [row["name"] for row in json.loads(listed.stdout)]

    before = len(hosts.requests)
    again = _download()
    assert again.exit_code == 0 and "nothing to do" in again.output and len(hosts.requests) == before

    fc = CliRunner().invoke(app, ["sample", "--model", "sevirlr", "--input", str(radar_file), "--out",
                                  str(tmp_path / "fc"), "--samples", "1", "--steps", "2", "--sampler", "ddim"])
    assert fc.exit_code == 0, fc.output


def test_a_cut_drive_transfer_resumes_after_a_new_confirmation(tmp_path, hosts):
    hosts.cut_after = 4000
    first = _download("--component", "vae")
    assert first.exit_code == 1 and len(_errors(first)) == 1, first.output
    assert "interrupted at 4000" in first.output and "run the command again to resume" in first.output
    downloads = _home(tmp_path) / "downloads"
    assert [p.name for p in downloads.iterdir()] == [f"{NAMES['vae']}.gdrive.part"]
    assert (downloads / f"{NAMES['vae']}.gdrive.part").stat().st_size == 4000
    second = _download()
    assert second.exit_code == 0, second.output
    assert hosts.drive.served[1] == (FILES["vae"].gdrive, "bytes=4000-")  # a new page, its cookie, then the rest
    assert (_model_dir(tmp_path) / "vae.ckpt").is_file() and _tree(downloads) == []


def test_a_mirror_answering_an_error_page_is_passed_over(tmp_path, hosts):
    """A mirror that answers 200 with an HTML page: one line, nothing written under the file's name, the next
    source serves the file."""
    result = _download("--url-base", hosts.url + "mirror-html/", "--component", "vae")
    assert result.exit_code == 0, result.output
    assert (f'the mirror sent an HTML page ("Error 503 Service Unavailable") for {NAMES["vae"]}; trying '
            "SharePoint…") in result.output
    assert f"SharePoint answered 404 for {NAMES['vae']} {GONE}; trying Google Drive…" in result.output
    assert json.loads((_home(tmp_path) / "downloads" / "sevirlr.partial" / "model.json").read_text())[
        "sources"]["vae"]["source"] == "gdrive"


def test_a_mirror_serving_the_files_is_tried_first(tmp_path, hosts, monkeypatch):
    monkeypatch.setenv("PREDIFF_WEIGHTS_URL", hosts.url + "mirror/")
    result = _download()
    assert result.exit_code == 0, result.output
    assert "trying" not in result.output and not hosts.drive.served
    assert not [r for r in hosts.requests if r["path"].startswith("/sharepoint/")]
    card = json.loads((_model_dir(tmp_path) / "model.json").read_text())
    assert card["sources"]["vae"]["url"] == hosts.url + "mirror/" + NAMES["vae"]


def test_a_2400_byte_file_is_refused_and_nothing_is_left(tmp_path, hosts, official, monkeypatch):
    """Drive's virus-scan warning, 2.4 kB, once saved as the `.pt`: a file far below the network's size is refused
    before it is written under the file's name, whatever its first bytes (here with no size recorded, as for the
    real release: the floor of 2 bytes per parameter decides)."""
    monkeypatch.setitem(pw.RELEASES, "sevirlr", _tiny_release(official, vae=None))
    small = Server({NAMES["vae"]: b"\x80\x02" + bytes(2398)})
    try:
        result = _download("--url-base", small.url, "--source", "mirror", "--component", "vae")
    finally:
        small.close()
    assert result.exit_code == 1 and len(_errors(result)) == 1, result.output
    assert "announced only 2,400 bytes" in result.output and "--from FOLDER" in result.output
    assert _tree(_home(tmp_path)) == []  # no model, no staging, no empty folder


def test_another_size_is_refused_unless_a_digest_names_the_file(tmp_path, hosts, official, monkeypatch):
    body = official["vae"][1]
    monkeypatch.setitem(pw.RELEASES, "sevirlr", _tiny_release(official, vae=len(body) + 1))
    args = ["--source", "mirror", "--url-base", hosts.url + "mirror/", "--component", "vae"]
    refused = _download(*args)
    assert refused.exit_code == 1 and len(_errors(refused)) == 1, refused.output
    assert f"announced {len(body):,} bytes instead of {len(body) + 1:,}" in refused.output
    accepted = _download(*args, "--sha256", f"{NAMES['vae']}={hashlib.sha256(body).hexdigest()}")
    assert accepted.exit_code == 0, accepted.output
    wrong = _download(*args[:-1], "unet", "--sha256", f"unet={'0' * 64}")
    assert wrong.exit_code == 1 and f"not {'0' * 64}" in wrong.output


def test_when_every_source_fails_the_last_line_gives_the_manual_route(tmp_path, hosts):
    hosts.drive.files.clear()  # Drive has lost them too
    result = _download()
    assert result.exit_code == 1, result.output
    assert f"SharePoint answered 404 for {NAMES['vae']} {GONE}; trying Google Drive…" in result.output
    (line,) = _errors(result)
    assert line.startswith(f"error: no source served {NAMES['vae']} (SharePoint answered 404 {GONE}; Google Drive "
                           "answered 404)")
    for component, file in FILES.items():
        size = pw.RELEASES["sevirlr"].files[component].size
        assert f"{file.name} ({size:,} bytes, https://drive.google.com/file/d/{file.gdrive}/view)" in line
    assert line.endswith("prediff download weights sevirlr --from FOLDER")
    assert _tree(_home(tmp_path)) == []


def test_source_choice(tmp_path, hosts):
    only_drive = _download("--source", "gdrive", "--component", "vae")
    assert only_drive.exit_code == 0 and "trying" not in only_drive.output, only_drive.output
    assert not [r for r in hosts.requests if r["path"].startswith("/sharepoint/")]
    no_mirror = _download("--source", "mirror")
    assert no_mirror.exit_code == 2 and "--source mirror needs a mirror" in no_mirror.output
    only_official = _download("--source", "official", "--component", "unet")
    assert only_official.exit_code == 1 and "trying" not in only_official.output
    assert "no source served" in only_official.output and "SharePoint answered 404" in only_official.output
    bad_endpoint = CliRunner().invoke(app, ["download", "weights"], env={"PREDIFF_GDRIVE_URL": "ftp://x/uc"})
    assert bad_endpoint.exit_code == 2 and "$PREDIFF_GDRIVE_URL" in bad_endpoint.output


# ------------------------------------------------------------------------------------------------------------------
# files fetched by hand


def _folder_with(tmp_path, official, components, name="manual"):
    folder = tmp_path / name
    folder.mkdir()
    for component in components:
        (folder / NAMES[component]).write_bytes(official[component][1])
    return folder


def test_from_a_folder_installs_the_model_and_a_rerun_does_nothing(tmp_path, hosts, official):
    folder = _folder_with(tmp_path, official, ("vae", "unet", "align"))
    result = _download("--from", str(folder))
    assert result.exit_code == 0, result.output
    assert not hosts.requests  # nothing downloaded
    card = json.loads((_model_dir(tmp_path) / "model.json").read_text())
    assert card["sources"]["vae"]["path"] == str((folder / NAMES["vae"]).resolve())
    assert card["sources"]["vae"]["sha256"] == hashlib.sha256(official["vae"][1]).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES.values())  # the user's files stay
    _check_model(official)
    again = _download("--from", str(folder))
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_from_files_one_by_one(tmp_path, hosts, official):
    folder = _folder_with(tmp_path, official, ("vae", "unet"))
    result = _download("--component", "vae", "--from", str(folder / NAMES["vae"]))
    assert result.exit_code == 0 and "also needs" in result.output, result.output
    result = _download("--component", "unet", "--from", str(folder / NAMES["unet"]))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in _model_dir(tmp_path).iterdir()) == ["model.json", "unet.ckpt", "vae.ckpt"]


@pytest.mark.parametrize("case", ["partial", "html", "wrong-network", "wrong-size", "renamed", "fifo"])
def test_from_with_bad_files_is_one_line_and_installs_nothing(tmp_path, hosts, official, case, monkeypatch):
    folder = _folder_with(tmp_path, official, ("vae", "unet", "align"))
    target = folder / NAMES["unet"]
    args = ["--from", str(folder)]
    if case == "partial":
        target.unlink()
        expected = f"missing {NAMES['unet']} ({len(official['unet'][1]):,} bytes, https://drive.google.com/file/d/"
    elif case == "html":  # what a browser saves when Drive answers its warning page
        target.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
                          "<body>" + "x" * 2200 + "</body></html>")
        expected = 'is an HTML page ("Google Drive - Virus scan warning"), not'
    elif case == "wrong-network":  # the alignment network's weights under the UNet's name
        target.write_bytes(official["align"][1])
        expected = f"{NAMES['unet']} does not fit the unet"
    elif case == "wrong-size":
        target.write_bytes(official["unet"][1] + b"\0")
        expected = f"If you trust this copy, run again with --sha256 {NAMES['unet']}="
    elif case == "renamed":
        args = ["--from", str(folder / NAMES["vae"]), "--from", str(tmp_path / "unet.pt")]
        (tmp_path / "unet.pt").write_bytes(official["unet"][1])
        expected = "not one of the published files of sevirlr"
    else:
        target.unlink()
        os.mkfifo(target)
        expected = "is a FIFO (named pipe); expected a regular file"
    if case == "wrong-network":  # a record that expects this size, so that only the conversion can tell
        monkeypatch.setitem(pw.RELEASES, "sevirlr", _tiny_release(official, unet=len(official["align"][1])))
    result = _download(*args)
    assert result.exit_code == 2 and len(_errors(result)) == 1 and "Traceback" not in result.output, result.output
    assert expected in result.output, result.output
    assert not _model_dir(tmp_path).exists()
    assert _tree(_home(tmp_path) / "downloads") in ([], ["sevirlr.partial", "sevirlr.partial/model.json",
                                                         "sevirlr.partial/vae.ckpt"])
    listed = CliRunner().invoke(app, ["models", "--json"])
    assert "sevirlr" not in [row["name"] for row in json.loads(listed.stdout)]


# ------------------------------------------------------------------------------------------------------------------
# crafted downloads, half installs


def _deep_pickle_pt(path, depth=1_000_000):
    """A zip `.pt` whose data.pkl is a dict keyed by a tuple nested `depth` deep (2 MB): hashing the key recurses in
    C without a limit."""
    import zipfile

    body = b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."  # EMPTY_DICT, (), TUPLE1 × depth, 1, SETITEM, STOP
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", body)
        archive.writestr("archive/byteorder", "little")
    return path


_RUN_TINY = textwrap.dedent("""
    import dataclasses, sys
    from prediff.pipelines import published_weights as pw
    files = {c: dataclasses.replace(f, size=None, parameters=500) for c, f in pw.RELEASES["sevirlr"].files.items()}
    pw.RELEASES["sevirlr"] = dataclasses.replace(pw.RELEASES["sevirlr"], preset="tiny", files=files)
    pw.FEATURE_NETWORKS["i3d"] = dataclasses.replace(pw.FEATURE_NETWORKS["i3d"],
                                                     file=dataclasses.replace(pw.FEATURE_NETWORKS["i3d"].file,
                                                                              parameters=500))
    from prediff.cli.app import app
    sys.argv = ["prediff", *sys.argv[1:]]
    app()
""")


@pytest.mark.parametrize("target", ["sevirlr", "i3d"])
def test_a_crafted_download_is_refused_in_one_line_and_leaves_nothing(tmp_path, target):
    """A deeply nested pickle served as the VAE (or the I3D) killed the process with SIGSEGV and left the file in
    downloads/; now: one line, exit 1, no file, no folder."""
    name = NAMES["vae"] if target == "sevirlr" else pw.FEATURE_NETWORKS["i3d"].file.name
    crafted = _deep_pickle_pt(tmp_path / "served.pt")
    srv = Server({name: crafted.read_bytes()})
    home = tmp_path / "home"
    args = ["download", "weights", target, "--source", "mirror", "--url-base", srv.url]
    args += ["--component", "vae"] if target == "sevirlr" else []
    try:
        proc = subprocess.run([sys.executable, "-c", _RUN_TINY, *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PREDIFF_HOME": str(home), "COLUMNS": "400"})
    finally:
        srv.close()
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nests containers more than 100 levels deep" in errors[0], proc.stderr
    assert _tree(home) == []


def test_a_half_installed_model_is_not_listed(tmp_path, hosts, official):
    """VAE and UNet converted, the alignment file an error page: the converted networks wait for the next run in
    downloads/, and `prediff models` neither lists them nor the staging folder of an older prediff."""
    server = Server({NAMES["vae"]: official["vae"][1], NAMES["unet"]: official["unet"][1]},
                    routes={f"/{NAMES['align']}": page_route(ERROR_PAGE)})
    try:
        result = _download("--source", "mirror", "--url-base", server.url)
    finally:
        server.close()
    assert result.exit_code == 1 and len(_errors(result)) == 1, result.output
    assert "no source served " + NAMES["align"] in result.output
    assert not (_home(tmp_path) / "models").exists()
    assert _tree(_home(tmp_path) / "downloads") == ["sevirlr.partial", "sevirlr.partial/model.json",
                                                    "sevirlr.partial/unet.ckpt", "sevirlr.partial/vae.ckpt"]
    old = _home(tmp_path) / "models" / ".sevirlr.partial"  # where an older prediff staged them
    old.mkdir(parents=True)
    for component in ("vae", "unet"):
        (old / f"{component}.ckpt").write_bytes(
            (_home(tmp_path) / "downloads" / "sevirlr.partial" / f"{component}.ckpt").read_bytes())
    listed = CliRunner().invoke(app, ["models", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["name"] for row in json.loads(listed.stdout)] == ["demo"]
    assert f"skipped {old}: a hidden folder" in listed.stderr
    resumed = _download()  # the staged networks are kept; only the alignment network is fetched (from Drive)
    assert resumed.exit_code == 0, resumed.output
    assert [file_id for file_id, _ in hosts.drive.served] == [FILES["align"].gdrive]


def test_unknown_names_and_bad_digests_are_one_line(tmp_path, hosts):
    assert "no published weights named 'other'" in _download("other").output
    assert "is not NAME=HEX" in _download("--sha256", "vae=xyz").output
    assert "takes no --source or --url-base" in _download("--from", str(tmp_path), "--source", "gdrive").output


def test_model_name_before_download_names_the_command(tmp_path, hosts, radar_file):
    result = CliRunner().invoke(app, ["sample", "--model", "sevirlr", "--input", str(radar_file), "--out",
                                      str(tmp_path / "fc")])
    assert result.exit_code == 2 and "prediff download weights sevirlr" in result.output


def test_a_users_own_model_folder_is_never_overwritten(tmp_path, hosts, official):
    folder = _model_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "vae.ckpt").write_bytes(b"my own vae")
    result = _download("--from", str(_folder_with(tmp_path, official, ("vae", "unet", "align"))))
    assert result.exit_code == 2 and "was not installed by `prediff download weights`" in result.output
    assert (folder / "vae.ckpt").read_bytes() == b"my own vae"


def test_the_release_record_names_the_official_files_and_their_drive_copies():
    """No exact size or digest of the published files is recorded (the official repository lists none), so the
    record holds none and the manual route gives the size from the parameter count."""
    files = pw.RELEASES["sevirlr"].files
    assert files["vae"].manual() == ("pretrained_sevirlr_vae_8x8x64_v1.pt (about 338 MB, "
                                     "https://drive.google.com/file/d/10OicEQuOPzSKDp5WYF3zDHsL-COywe98/view)")
    assert [f.gdrive for f in files.values()] == ["10OicEQuOPzSKDp5WYF3zDHsL-COywe98",
                                                  "1cVB0Sm2V4OMTLxNNEXlb2__ONqSAjUDJ",
                                                  "1CzrzNVDVTyc8ivnWqEOiJnrN6wraY6fy"]
    assert pw.FEATURE_NETWORKS["i3d"].file.gdrive == "1UwfpQEIi1jJqGmTmRWcIClEpXF3jKwOq"
    assert all(f.size is None and f.sha256 is None for f in [*files.values(), pw.FEATURE_NETWORKS["i3d"].file])
    assert files["unet"].min_size == 2 * 136_817_538
