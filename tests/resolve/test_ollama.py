"""Ollama releases and model manifests, facts from the recorded data."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.bounded import within
from tests.support.hyp import examples

from anklume.errors import ResolveError, SourceError
from anklume.lock.schema import ModelBlob, OllamaLocked
from anklume.resolve.http import Fetcher
from anklume.resolve.ollama import (
    ModelName,
    parse_model_ref,
    parse_sha256sum,
    pick_asset,
    resolve_model,
    resolve_release,
)

from tests.support.recorded import (GEMMA, LLAMA, STANDIN_ASSET_SIZE, hermit_digests, release_asset_sizes,
                                    sha256sum_txt)

V0131_AMD64 = "4997753db0c578d24f8fc95d1538741609d72529ab6e913ecbf910ae919b0232"
RELEASES = "/ollama/ollama/releases"

# -- sha256sum.txt -------------------------------------------------------------------------------


def test_parse_sha256sum_strips_dot_slash_and_star():
    text = (
        f"{V0131_AMD64}  ./ollama-linux-amd64.tgz\n"
        "\n"
        f"{'A' * 64} *ollama-darwin.tgz\r\n"
        f"{'b' * 64}  ollama-linux-arm64.tgz\n"
    )
    assert parse_sha256sum(text) == {
        "ollama-linux-amd64.tgz": V0131_AMD64,
        "ollama-darwin.tgz": "a" * 64,
        "ollama-linux-arm64.tgz": "b" * 64,
    }


@pytest.mark.parametrize("line", ["abc  ./x", f"{'a' * 64}./x", f"{'a' * 64}  ", f"{'g' * 64}  ./x", "garbage"])
def test_parse_sha256sum_rejects_malformed_lines(line):
    with pytest.raises(SourceError, match="line 2"):
        parse_sha256sum(f"{'a' * 64}  ./ok\n{line}\n", source="sha256sum.txt")


def test_parse_sha256sum_rejects_conflicting_duplicates_and_empty_files():
    with pytest.raises(SourceError, match="twice"):
        parse_sha256sum(f"{'a' * 64}  ./x\n{'b' * 64}  x\n")
    with pytest.raises(SourceError, match="no checksums"):
        parse_sha256sum("\n\n")


ASSET_NAMES = st.text("abcxyz019._- ", min_size=1, max_size=20).filter(lambda n: n.strip() == n)
DIGESTS = st.binary(min_size=8, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())


@settings(max_examples=examples(50))
@given(st.dictionaries(ASSET_NAMES, DIGESTS, min_size=1), st.booleans())
def test_parse_sha256sum_round_trips_what_sha256sum_writes(sums, binary_mode):
    mode = " *" if binary_mode else "  ./"
    text = "".join(f"{digest}{mode}{name}\n" for name, digest in sums.items())
    assert parse_sha256sum(text) == sums


# -- asset choice ----------------------------------------------------------------------------------

ZST_RELEASE = ["ollama-linux-amd64.tar.zst", "ollama-linux-amd64-rocm.tar.zst", "ollama-linux-amd64-mlx.tar.zst",
               "ollama-linux-arm64.tar.zst", "ollama-linux-arm64-jetpack6.tar.zst", "ollama-darwin.tgz"]


@pytest.mark.parametrize(
    ("names", "arch", "chosen"),
    [
        (ZST_RELEASE, "amd64", "ollama-linux-amd64.tar.zst"),
        (ZST_RELEASE, "aarch64", "ollama-linux-arm64.tar.zst"),
        (["ollama-linux-amd64-rocm.tgz", "ollama-linux-amd64.tgz"], "x86_64", "ollama-linux-amd64.tgz"),
        (["ollama-linux-amd64", "ollama-linux-arm64"], "amd64", "ollama-linux-amd64"),
        (["ollama-linux-amd64.tgz", "ollama-linux-amd64.tar.zst"], "amd64", "ollama-linux-amd64.tar.zst"),
    ],
)
def test_pick_asset_prefers_zst_then_tgz_then_bare(names, arch, chosen):
    assert pick_asset(names, arch) == chosen


def test_pick_asset_never_takes_a_variant_and_lists_what_it_found():
    with pytest.raises(ResolveError) as err:
        pick_asset(["ollama-linux-amd64-rocm.tgz", "ollama-linux-arm64-jetpack5.tgz", "ollama-darwin.tgz"], "amd64")
    assert err.value.hint == "its Linux assets: ollama-linux-amd64-rocm.tgz, ollama-linux-arm64-jetpack5.tgz"
    with pytest.raises(ResolveError, match="not a name like amd64"):
        pick_asset(ZST_RELEASE, "../amd64")


# -- releases over HTTP ------------------------------------------------------------------------


def release_files(version: str, prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}/v{version}/sha256sum.txt": sha256sum_txt(version)}


def test_release_v0131_amd64(http_serve, fetcher):
    prefix = f"{RELEASES}/download"
    server = http_serve(release_files("0.13.1", prefix), sizes=release_asset_sizes("0.13.1", prefix))
    pin = resolve_release(fetcher, server.url + prefix, "0.13.1", "amd64")
    assert pin == OllamaLocked(
        version="0.13.1",
        asset="ollama-linux-amd64.tgz",
        url="https://github.com/ollama/ollama/releases/download/v0.13.1/ollama-linux-amd64.tgz",
        sha256=V0131_AMD64,
        size=STANDIN_ASSET_SIZE,
    )
    assert server.requests == [f"{prefix}/v0.13.1/sha256sum.txt", f"{prefix}/v0.13.1/ollama-linux-amd64.tgz"]


def test_release_bare_binary_era(http_serve, fetcher):
    server = http_serve(release_files("0.3.6", "/mirror"), sizes=release_asset_sizes("0.3.6", "/mirror"))
    pin = resolve_release(fetcher, server.url + "/mirror/", "v0.3.6", "arm64")
    assert (pin.asset, pin.sha256) == ("ollama-linux-arm64", hermit_digests()["0.3.6"]["ollama-linux-arm64"])
    assert pin.url == "https://github.com/ollama/ollama/releases/download/v0.3.6/ollama-linux-arm64"
    assert pin.size == STANDIN_ASSET_SIZE


def github_like_mirror(http_serve, version: str):
    """latest/download/<asset> -> download/v<ver>/<asset> -> a CDN URL naming no version; the
    asset itself redirects to the CDN too, which answers HEAD with its length."""
    cdn = "/release-assets/github-production-release-asset/12345"
    return http_serve({cdn: sha256sum_txt(version)}, sizes={cdn + "-asset": 1_234_567}, redirects={
        f"{RELEASES}/latest/download/sha256sum.txt": f"{RELEASES}/download/v{version}/sha256sum.txt",
        f"{RELEASES}/download/v{version}/sha256sum.txt": cdn + "?sp=r&rscd=attachment%3B+filename%3Dsha256sum.txt",
        f"{RELEASES}/download/v{version}/ollama-linux-amd64.tgz": cdn + "-asset?sp=r",
    })


def test_latest_through_a_redirecting_mirror_then_offline(http_serve, tmp_path):
    server = github_like_mirror(http_serve, "0.13.1")
    pin = resolve_release(Fetcher(cache_dir=tmp_path, timeout=2), server.url + f"{RELEASES}/download", "latest",
                          "amd64")
    assert (pin.version, pin.sha256, pin.size) == ("0.13.1", V0131_AMD64, 1_234_567)
    assert server.requests[0] == f"{RELEASES}/latest/download/sha256sum.txt"
    server.stop()
    offline = resolve_release(Fetcher(cache_dir=tmp_path, offline=True), "http://127.0.0.1:9/x/download", "latest",
                              "amd64")
    assert offline == pin


def test_latest_on_a_base_without_download_suffix(http_serve, fetcher):
    server = http_serve(release_files("0.12.10", "/m"), sizes=release_asset_sizes("0.12.10", "/m"),
                        redirects={"/m/latest/sha256sum.txt": "/m/v0.12.10/sha256sum.txt"})
    pin = resolve_release(fetcher, server.url + "/m", "latest", "amd64")
    assert pin.version == "0.12.10"
    assert pin.url == "https://github.com/ollama/ollama/releases/download/v0.12.10/ollama-linux-amd64.tgz"


def test_latest_without_a_revealing_redirect_is_an_error(http_serve, fetcher):
    server = http_serve({"/m/latest/sha256sum.txt": sha256sum_txt("0.13.1")})
    with pytest.raises(SourceError) as err:
        resolve_release(fetcher, server.url + "/m", "latest", "amd64")
    assert "latest version is unknown" in err.value.message and "pin a version" in err.value.hint


def test_release_mirror_invariance(http_serve, tmp_path):
    files = release_files("0.13.1", "/a")
    one, two = (http_serve(files, sizes=release_asset_sizes("0.13.1", "/a")) for _ in range(2))
    pins = [resolve_release(Fetcher(cache_dir=tmp_path / str(i), timeout=2), s.url + "/a", "0.13.1", "amd64")
            for i, s in enumerate((one, two))]
    assert msgspec.json.encode(pins[0]) == msgspec.json.encode(pins[1])


def test_unknown_release_and_bad_versions(http_serve, fetcher):
    server = http_serve({})
    with pytest.raises(ResolveError, match="Ollama release v9.9.9 not found"):
        resolve_release(fetcher, server.url, "9.9.9", "amd64")
    with pytest.raises(ResolveError, match="not 'latest' or a version"):
        resolve_release(fetcher, server.url, "0.13.1/../../x", "amd64")


def test_release_without_the_arch_names_the_version(http_serve, fetcher):
    server = http_serve({"/v0.13.1/sha256sum.txt": sha256sum_txt("0.13.1")})
    with pytest.raises(ResolveError, match=r"Ollama v0.13.1: no ollama-linux-riscv64 build"):
        resolve_release(fetcher, server.url, "0.13.1", "riscv64")


# -- the size of a release's asset ------------------------------------------------------------------

SUMS = "/v0.13.1/sha256sum.txt"
ASSET = "/v0.13.1/ollama-linux-amd64.tgz"


def test_head_405_falls_back_to_a_ranged_get(http_serve, fetcher):
    """A server that refuses HEAD (405) and serves ranges: the size is Content-Range's total."""
    body = b"tarball bytes" * 100
    server = http_serve({SUMS: sha256sum_txt("0.13.1"), ASSET: body}, ranges=True, head_status={ASSET: 405})
    pin = resolve_release(fetcher, server.url, "0.13.1", "amd64")
    assert pin.size == len(body)
    assert server.headers[-1]["Range"] == "bytes=0-0" and server.sent[-1] == 1


def test_a_full_answer_to_the_ranged_get_is_not_read(bad_serve, fetcher):
    """A server that ignores Range answers 200 with the whole tarball: its length is taken from
    Content-Length and the body is never read (the connection is closed)."""
    from tests.support.badserve import Misbehaviour

    server = bad_serve({SUMS: Misbehaviour(body=sha256sum_txt("0.13.1")),
                        ASSET: Misbehaviour(content_length=1_700_000_000, body=b"", endless=True)})
    pin = within(10, lambda: resolve_release(fetcher, server.url, "0.13.1", "amd64"))
    assert pin.size == 1_700_000_000
    assert server.sent[-1] < 64 << 20


def test_an_asset_listed_but_missing_is_an_error(http_serve, fetcher):
    server = http_serve(release_files("0.13.1"))
    with pytest.raises(ResolveError) as err:
        resolve_release(fetcher, server.url, "0.13.1", "amd64")
    assert err.value.message == (f"Ollama v0.13.1: sha256sum.txt lists ollama-linux-amd64.tgz but "
                                 f"{server.url}{ASSET} answered 404")


def test_an_asset_of_no_known_length_is_an_error(bad_serve, fetcher):
    from tests.support.badserve import Misbehaviour

    server = bad_serve({SUMS: Misbehaviour(body=sha256sum_txt("0.13.1")),
                        ASSET: Misbehaviour(content_length=None, body=b"")})
    with pytest.raises(SourceError) as err:
        within(10, lambda: resolve_release(fetcher, server.url, "0.13.1", "amd64"))
    assert err.value.message == (f"Ollama releases {server.url}: cannot learn the size of {server.url}{ASSET}: "
                                 "it answers with no Content-Length, to HEAD or to a GET of its first byte")


def test_offline_answers_the_size_from_the_cache_and_names_a_missing_one(http_serve, tmp_path):
    from anklume.errors import OfflineMiss

    server = http_serve(release_files("0.13.1"), sizes=release_asset_sizes("0.13.1"))
    url = server.url
    online = resolve_release(Fetcher(cache_dir=tmp_path, timeout=2), url, "0.13.1", "amd64")
    server.stop()
    assert resolve_release(Fetcher(cache_dir=tmp_path, offline=True), url, "0.13.1", "amd64") == online
    for entry in (tmp_path / "index").iterdir():  # a cache filled by an anklume that asked no size
        if b'"HEAD ' in entry.read_bytes():
            entry.unlink()
    with pytest.raises(OfflineMiss) as err:
        resolve_release(Fetcher(cache_dir=tmp_path, offline=True), url, "0.13.1", "amd64")
    assert err.value.message.startswith("offline: HEAD https://github.com/ollama/ollama/releases/download/v0.13.1/"
                                        "ollama-linux-amd64.tgz is not in the cache")


def test_a_lock_written_before_sizes_were_pinned_still_reads(tmp_path):
    from anklume.lock.codec import decode_lock, encode_lock
    from tests.support.lockfiles import LOCKFILES

    data = (LOCKFILES / "gpu-workstation.lock").read_bytes()
    old = data.replace(f'      "size": {STANDIN_ASSET_SIZE},\n'.encode(), b"")
    assert old != data
    lock = decode_lock(old)
    assert lock.ollama.locked.size is None
    assert encode_lock(lock) == old  # re-locking keeps an old pin byte for byte


# -- model names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("llama3.2:3b", ModelName(model="llama3.2", tag="3b")),
        ("gemma", ModelName(model="gemma")),
        ("jmorgan/llama3", ModelName(namespace="jmorgan", model="llama3")),
        ("127.0.0.1:5000/lib/m:t", ModelName(host="127.0.0.1:5000", namespace="lib", model="m", tag="t")),
        ("http://localhost:5000/a/b:c", ModelName(host="localhost:5000", namespace="a", model="b", tag="c",
                                                  scheme="http")),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
         ModelName(host="hf.co", namespace="bartowski", model="Llama-3.2-1B-Instruct-GGUF", tag="Q4_K_M")),
    ],
)
def test_parse_model_ref(ref, expected):
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize(
    ("ref", "rule"),
    [
        ("llama3.2:", "invalid tag ''"),
        ("/llama", "invalid namespace ''"),
        ("my.ns/llama", "invalid namespace 'my.ns'"),
        ("-x", "invalid model '-x'"),
        ("m:" + "t" * 81, "invalid tag"),
        ("a/b/c/d", "invalid host 'a/b'"),
        ("ftp://h/n/m", "scheme 'ftp'"),
        ("llama@sha256:abc", "invalid"),
    ],
)
def test_parse_model_ref_rejects_invalid_parts_with_the_rule(ref, rule):
    with pytest.raises(ResolveError) as err:
        parse_model_ref(ref)
    assert rule in err.value.message


# -- model manifests over HTTP ---------------------------------------------------------------------


def registry_files() -> dict[str, bytes]:
    return {"/v2/library/gemma/manifests/2b": GEMMA.read_bytes(),
            "/v2/library/llama3.2/manifests/3b": LLAMA.read_bytes()}


def test_gemma_2b(http_serve, fetcher):
    server = http_serve(registry_files(), content_types={"/v2/library/gemma/manifests/2b": "text/plain"})
    pin = resolve_model(fetcher, server.url, "gemma:2b")
    assert pin.name == "registry.ollama.ai/library/gemma:2b"
    assert pin.digest == "sha256:b50d6c999e592ae4f79acae23b4feaefbdfceaa7cd366df2610e3072c052a160"
    assert pin.size == 1678456656
    assert pin.vram_bytes == 1678447520
    assert pin.manifest.encode() == GEMMA.read_bytes()
    assert pin.config == ModelBlob(mediaType="application/vnd.docker.container.image.v1+json",
                                   digest="sha256:887433b89a901c156f7e6944442f3c9e57f3c55d6ed52042cbb7303aea994290",
                                   size=483)
    assert server.headers[0]["Accept"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_llama32_3b(http_serve, fetcher):
    pin = resolve_model(fetcher, http_serve(registry_files()).url, "llama3.2:3b")
    assert pin.digest == "sha256:a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"
    assert pin.size == 2019393189
    assert pin.vram_bytes == 2019377376
    assert [layer.size for layer in pin.layers] == [2019377376, 1429, 7711, 6016, 96]
    assert pin.layers[0].mediaType == "application/vnd.ollama.image.model"


def test_model_mirror_invariance_and_offline(http_serve, tmp_path):
    one, two = http_serve(registry_files()), http_serve(registry_files())
    pins = [resolve_model(Fetcher(cache_dir=tmp_path / str(i), timeout=2), s.url, "llama3.2:3b")
            for i, s in enumerate((one, two))]
    assert msgspec.json.encode(pins[0]) == msgspec.json.encode(pins[1])
    one.stop()
    offline = resolve_model(Fetcher(cache_dir=tmp_path / "0", offline=True), None, "llama3.2:3b")
    assert msgspec.json.encode(offline) == msgspec.json.encode(pins[0])


@pytest.mark.parametrize("header", ["Docker-Content-Digest", "Ollama-Content-Digest"])
def test_agreeing_digest_headers_are_accepted_in_both_forms(header, http_serve, fetcher):
    hexdigest = hashlib.sha256(GEMMA.read_bytes()).hexdigest()
    value = hexdigest if header.startswith("Ollama") else f"sha256:{hexdigest}"
    path = "/v2/library/gemma/manifests/2b"
    server = http_serve({path: GEMMA.read_bytes()}, response_headers={path: {header: value}})
    assert resolve_model(fetcher, server.url, "gemma:2b").digest == f"sha256:{hexdigest}"


@pytest.mark.parametrize("header", ["Docker-Content-Digest", "Ollama-Content-Digest"])
def test_disagreeing_digest_header_is_a_source_error(header, http_serve, fetcher):
    path = "/v2/library/gemma/manifests/2b"
    server = http_serve({path: GEMMA.read_bytes()}, response_headers={path: {header: "sha256:" + "0" * 64}})
    with pytest.raises(SourceError) as err:
        resolve_model(fetcher, server.url, "gemma:2b")
    assert header.lower() in err.value.message and server.url in err.value.message
    assert "ANKLUME_OLLAMA_REGISTRY" in err.value.hint


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (b"{oops", "malformed: JSON is malformed"),
        (b'{"schemaVersion": 2}', "missing required field `config`"),
        (b'{"config": {"mediaType": "x", "digest": "sha256:' + b"a" * 64 + b'", "size": 1}, "layers": []}',
         "length >= 1 - at `$.layers`"),
        (b'{"config": {"mediaType": "x", "digest": "md5:abc", "size": 1}, "layers": []}', "at `$.config.digest`"),
        (GEMMA.read_bytes().replace(b'"size":84}', b'"size":-84}'), "at `$.layers[3].size`"),
        (b'{"manifests": []}', "missing required field"),
    ],
)
def test_malformed_manifests_name_the_url_and_what_is_missing(body, wanted, http_serve, fetcher):
    server = http_serve({"/v2/library/gemma/manifests/2b": body})
    with pytest.raises(SourceError) as err:
        resolve_model(fetcher, server.url, "gemma:2b")
    assert f"manifest {server.url}/v2/library/gemma/manifests/2b" in err.value.message
    assert wanted in err.value.message


def test_unknown_model_is_a_resolve_error_with_the_tags_page(http_serve, fetcher):
    server = http_serve(registry_files())
    with pytest.raises(ResolveError) as err:
        resolve_model(fetcher, server.url, "llama3.2:99b")
    assert "not found" in err.value.message
    assert err.value.hint == "see https://ollama.com/library/llama3.2/tags for its tags"


def test_other_hosts_ignore_the_registry_override(http_serve, fetcher):
    server = http_serve(registry_files())
    host = server.url.removeprefix("http://")
    pin = resolve_model(fetcher, "http://127.0.0.1:9", f"http://{host}/library/gemma:2b")
    assert pin.name == f"{host}/library/gemma:2b"
    assert pin.digest.endswith("a160")
