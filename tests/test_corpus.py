"""语料构建（corpus.py）和读训练文本（common.read_text）的测试：成功时逐字节可复现，失败时给中文说明且不留半个文件。"""
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import corpus
from conftest import REPO, assert_clean_error, run_script

TAMPERED = "宋词/ci.song.5000.json"  # 测试里被篡改、弄坏的那一个源文件
TAMPERED_NAME = TAMPERED.split("/")[-1]


class QuietHandler(SimpleHTTPRequestHandler):
    """不在测试输出里打印每一条访问日志的静态文件服务器。"""

    def log_message(self, *args):
        pass


@contextmanager
def http_server(directory, handler=None):
    """在 127.0.0.1 的随机端口上提供 directory 里的文件（或用 handler 处理请求），返回下载地址前缀；退出时关掉服务器。"""
    handler = handler or functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def no_env_source(monkeypatch):
    """确保 build_corpus 不会悄悄读环境变量里的本地目录，而是真的去下载。"""
    monkeypatch.delenv("CHINESE_POETRY_DIR", raising=False)
    monkeypatch.delenv("CHINESE_POETRY_BASE_URL", raising=False)


def copy_sources(src, dst):
    """把 23 个源文件按原来的目录结构从 src 复制到 dst（既可当作本地源目录，也可当作下载缓存）。"""
    for name in corpus.SOURCE_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)
    return dst


def sha_of_file(path):
    """文件内容的 sha256（十六进制）。"""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused(out, match, **build_args):
    """build_corpus 必须抛出 CorpusError（消息里有 match），并且不留下 ci.txt 或它的临时文件。"""
    with pytest.raises(corpus.CorpusError, match=match):
        corpus.build_corpus(out, **build_args)
    assert not out.exists()
    assert not list(out.parent.glob("*.tmp"))


# 三种篡改：文件末尾多一个字节；改掉正文里的一个字（JSON 仍然合法，只有 sha256 能发现）；JSON 被截断
TAMPERINGS = {
    "多一个字节": lambda data: data + b" ",
    "改一个字": lambda data: data.replace("春".encode(), "秋".encode(), 1),
    "JSON 不完整": lambda data: data[:100],
}


def tampered_copy(src, root, tamper):
    """把源文件从 src 复制到 root，再用 tamper 改掉其中 TAMPERED 这一个文件。"""
    copy_sources(src, root)
    path = root / TAMPERED
    path.write_bytes(tamper(path.read_bytes()))
    return root


def test_full_build_from_local_dir(tmp_path, poetry_dir):
    out = tmp_path / "ci.txt"
    assert corpus.build_corpus(out, source_dir=poetry_dir) == 21_095
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    text = out.read_text(encoding="utf-8")
    assert len(text) == 2_062_731
    assert len(set(text)) == 6_104


def test_download_then_cache_only(tmp_path, no_env_source, capsys, poetry_dir):
    out, cache = tmp_path / "ci.txt", tmp_path / "cache"
    with http_server(poetry_dir) as base_url:
        corpus.build_corpus(out, source_dir=None, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert capsys.readouterr().err.count("下载 ") == len(corpus.SOURCE_FILES)

    # 服务器已经关掉：第二次构建只能靠缓存，一旦尝试联网就会失败
    out.unlink()
    corpus.build_corpus(out, source_dir=None, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert "下载" not in capsys.readouterr().err


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=list(TAMPERINGS))
def test_tampered_local_file_is_refused(tmp_path, tamper, poetry_dir):
    source = tampered_copy(poetry_dir, tmp_path / "poetry", tamper)
    assert_refused(tmp_path / "ci.txt", match=TAMPERED_NAME, source_dir=source)


def test_malformed_download_is_refused_and_not_cached(tmp_path, no_env_source, poetry_dir):
    served = tampered_copy(poetry_dir, tmp_path / "served", TAMPERINGS["JSON 不完整"])
    cache = tmp_path / "cache"
    with http_server(served) as base_url:
        assert_refused(tmp_path / "ci.txt", match=TAMPERED_NAME, base_url=base_url, cache_dir=cache)
    assert not (cache / TAMPERED).exists()


def test_corrupted_cache_file_is_downloaded_again(tmp_path, no_env_source, capsys, poetry_dir):
    cache = tampered_copy(poetry_dir, tmp_path / "cache", TAMPERINGS["JSON 不完整"])
    out = tmp_path / "ci.txt"
    with http_server(poetry_dir) as base_url:
        corpus.build_corpus(out, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert sha_of_file(cache / TAMPERED) == corpus.SOURCE_FILES[TAMPERED]
    # 只有坏掉的那一个文件被重新下载
    downloads = [line for line in capsys.readouterr().err.splitlines() if "下载 " in line]
    assert len(downloads) == 1 and TAMPERED in downloads[0]


@pytest.mark.parametrize("tamper", [None, TAMPERINGS["多一个字节"]], ids=["目录不存在", "文件被篡改"])
def test_cli_bad_source_fails_cleanly(tmp_path, tamper, request):
    source = tmp_path / "poetry"
    if tamper:
        tampered_copy(request.getfixturevalue("poetry_dir"), source, tamper)
    out = tmp_path / "out.txt"
    assert_clean_error(run_script("corpus.py", "--source", str(source), "--out", str(out)))
    assert not out.exists()


READ_TEXT_FILES = {"空文件": b"", "不存在": None, "不是 UTF-8": "春江".encode("gbk") + b"\xff"}


@pytest.mark.parametrize("case", READ_TEXT_FILES)
def test_read_text_errors(tmp_path, case):
    path = tmp_path / "data.txt"
    if READ_TEXT_FILES[case] is not None:
        path.write_bytes(READ_TEXT_FILES[case])
    assert_clean_error(run_script("simplemodel.py", f"--data_path={path}"), code=1)


def test_first_use_builds_ci_txt_like_a_fresh_clone(tmp_path, poetry_dir):
    # 只复制三个文件到空目录，模拟刚克隆、还没有 ci.txt 的仓库：第一次运行就要自动构建并校验
    for name in ("common.py", "corpus.py", "simplemodel.py"):
        shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run([sys.executable, "simplemodel.py", "--max_new_tokens=20"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "CHINESE_POETRY_DIR": str(poetry_dir)})
    assert result.returncode == 0, result.stderr
    assert sha_of_file(tmp_path / "ci.txt") == corpus.CORPUS_SHA256
    assert result.stdout.split("--- 春江 ---\n")[1].startswith("春江")


class CountingHandler(QuietHandler):
    """记下每一个请求的静态文件服务器：用来数下载重试了几次。"""

    requests = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()


class ShortBodyHandler(QuietHandler):
    """声称有 1000 个字节、只发 10 个就断开：urllib 读到一半会抛 IncompleteRead。"""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")


def test_404_is_not_retried(tmp_path, no_env_source):
    CountingHandler.requests = []
    with http_server(None, functools.partial(CountingHandler, directory=str(tmp_path))) as url:
        assert_refused(tmp_path / "ci.txt", match="404", base_url=url, cache_dir=tmp_path / "cache")
    assert len(CountingHandler.requests) == 1


def test_incomplete_read_is_a_clear_error(tmp_path, no_env_source, monkeypatch):
    monkeypatch.setattr(corpus.time, "sleep", lambda seconds: None)
    with http_server(None, ShortBodyHandler) as url:
        assert_refused(tmp_path / "ci.txt", match="IncompleteRead|下载失败", base_url=url, cache_dir=tmp_path / "cache")


def test_malformed_base_url_is_a_clean_cli_error(tmp_path):
    env = {"CHINESE_POETRY_DIR": "", "CHINESE_POETRY_BASE_URL": "not a url/"}
    result = run_script("corpus.py", "--out", str(tmp_path / "ci.txt"), env=env)
    assert_clean_error(result)
    assert "下载地址不对" in result.stderr
    assert not list(tmp_path.iterdir())


def test_two_writers_never_share_a_temp_file(tmp_path, monkeypatch):
    # 两个同时第一次运行的进程各写各的临时文件：临时文件名每次都不一样，改名前的内容也就不会被对方写坏
    used = []
    real_replace = os.replace
    monkeypatch.setattr(corpus.os, "replace", lambda src, dst: (used.append(src), real_replace(src, dst)))
    corpus.write_atomically(tmp_path / "ci.txt", b"first")
    corpus.write_atomically(tmp_path / "ci.txt", b"second")
    assert len(set(used)) == 2
    assert (tmp_path / "ci.txt").read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["ci.txt"]


def make_clone(tmp_path, with_cache_from=None):
    """把仓库里被 git 跟踪的文件复制到一个旁边没有 ../shared 的空目录，像学习者刚克隆下来的样子；
    with_cache_from 给出时，再把 23 个源文件放进克隆的下载缓存 .cache/chinese-poetry/。"""
    clone = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, clone / name)
    if with_cache_from:
        copy_sources(with_cache_from, clone / ".cache" / "chinese-poetry")
    return clone


def run_corpus_tests_in(clone):
    """在克隆里跑需要完整语料的那几项测试（不联网：下载地址指向一个关着的端口），返回 pytest 的输出。"""
    env = {k: v for k, v in os.environ.items() if k not in ("CHINESE_POETRY_DIR", "BABYGPT_REQUIRE_CORPUS")}
    env["CHINESE_POETRY_BASE_URL"] = "http://127.0.0.1:9/"
    selected = ["tests/test_corpus.py::test_full_build_from_local_dir",
                "tests/test_corpus.py::test_first_use_builds_ci_txt_like_a_fresh_clone",
                "tests/test_stage1.py::test_tokenizer_round_trips_full_corpus"]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected], cwd=clone,
                            capture_output=True, text=True, env=env, timeout=300)
    return result.returncode, result.stdout


def test_fresh_clone_with_only_the_download_cache_passes(tmp_path, poetry_dir):
    code, out = run_corpus_tests_in(make_clone(tmp_path, with_cache_from=poetry_dir))
    assert code == 0, out
    assert "4 passed" in out and "skipped" not in out, out


def test_fresh_clone_with_no_corpus_skips_instead_of_failing(tmp_path):
    code, out = run_corpus_tests_in(make_clone(tmp_path))
    assert code == 0, out
    assert "4 skipped" in out and "failed" not in out, out
