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
from conftest import POETRY_DIR, REPO, assert_clean_error, run_script

TAMPERED = "宋词/ci.song.5000.json"  # 测试里被篡改、弄坏的那一个源文件
TAMPERED_NAME = TAMPERED.split("/")[-1]


class QuietHandler(SimpleHTTPRequestHandler):
    """不在测试输出里打印每一条访问日志的静态文件服务器。"""

    def log_message(self, *args):
        pass


@contextmanager
def http_server(directory):
    """在 127.0.0.1 的随机端口上提供 directory 里的文件，返回下载地址前缀；退出时关掉服务器。"""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
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


def copy_sources(dst):
    """把 23 个源文件按原来的目录结构复制到 dst（既可当作本地源目录，也可当作下载缓存）。"""
    for name in corpus.SOURCE_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(POETRY_DIR / name, dst / name)
    return dst


def sha_of_file(path):
    """文件内容的 sha256（十六进制）。"""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused(out, match, **build_args):
    """build_corpus 必须抛出 CorpusError（消息里有 match），并且不留下 ci.txt 或它的临时文件。"""
    with pytest.raises(corpus.CorpusError, match=match):
        corpus.build_corpus(out, **build_args)
    assert not out.exists()
    assert not out.with_name(out.name + ".tmp").exists()


# 三种篡改：文件末尾多一个字节；改掉正文里的一个字（JSON 仍然合法，只有 sha256 能发现）；JSON 被截断
TAMPERINGS = {
    "多一个字节": lambda data: data + b" ",
    "改一个字": lambda data: data.replace("春".encode(), "秋".encode(), 1),
    "JSON 不完整": lambda data: data[:100],
}


def tampered_copy(root, tamper):
    """把源文件复制到 root，再用 tamper 改掉其中 TAMPERED 这一个文件。"""
    copy_sources(root)
    path = root / TAMPERED
    path.write_bytes(tamper(path.read_bytes()))
    return root


def test_full_build_from_local_dir(tmp_path):
    out = tmp_path / "ci.txt"
    assert corpus.build_corpus(out, source_dir=POETRY_DIR) == 21_095
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    text = out.read_text(encoding="utf-8")
    assert len(text) == 2_062_731
    assert len(set(text)) == 6_104


def test_download_then_cache_only(tmp_path, no_env_source, capsys):
    out, cache = tmp_path / "ci.txt", tmp_path / "cache"
    with http_server(POETRY_DIR) as base_url:
        corpus.build_corpus(out, source_dir=None, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert capsys.readouterr().err.count("下载 ") == len(corpus.SOURCE_FILES)

    # 服务器已经关掉：第二次构建只能靠缓存，一旦尝试联网就会失败
    out.unlink()
    corpus.build_corpus(out, source_dir=None, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert "下载" not in capsys.readouterr().err


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=list(TAMPERINGS))
def test_tampered_local_file_is_refused(tmp_path, tamper):
    source = tampered_copy(tmp_path / "poetry", tamper)
    assert_refused(tmp_path / "ci.txt", match=TAMPERED_NAME, source_dir=source)


def test_malformed_download_is_refused_and_not_cached(tmp_path, no_env_source):
    served = tampered_copy(tmp_path / "served", TAMPERINGS["JSON 不完整"])
    cache = tmp_path / "cache"
    with http_server(served) as base_url:
        assert_refused(tmp_path / "ci.txt", match=TAMPERED_NAME, base_url=base_url, cache_dir=cache)
    assert not (cache / TAMPERED).exists()


def test_corrupted_cache_file_is_downloaded_again(tmp_path, no_env_source, capsys):
    cache = tampered_copy(tmp_path / "cache", TAMPERINGS["JSON 不完整"])
    out = tmp_path / "ci.txt"
    with http_server(POETRY_DIR) as base_url:
        corpus.build_corpus(out, base_url=base_url, cache_dir=cache)
    assert sha_of_file(out) == corpus.CORPUS_SHA256
    assert sha_of_file(cache / TAMPERED) == corpus.SOURCE_FILES[TAMPERED]
    # 只有坏掉的那一个文件被重新下载
    downloads = [line for line in capsys.readouterr().err.splitlines() if "下载 " in line]
    assert len(downloads) == 1 and TAMPERED in downloads[0]


@pytest.mark.parametrize("tamper", [None, TAMPERINGS["多一个字节"]], ids=["目录不存在", "文件被篡改"])
def test_cli_bad_source_fails_cleanly(tmp_path, tamper):
    source = tmp_path / "poetry"
    if tamper:
        tampered_copy(source, tamper)
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


def test_first_use_builds_ci_txt_like_a_fresh_clone(tmp_path):
    # 只复制三个文件到空目录，模拟刚克隆、还没有 ci.txt 的仓库：第一次运行就要自动构建并校验
    for name in ("common.py", "corpus.py", "simplemodel.py"):
        shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run([sys.executable, "simplemodel.py", "--max_new_tokens=20"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "CHINESE_POETRY_DIR": str(POETRY_DIR)})
    assert result.returncode == 0, result.stderr
    assert sha_of_file(tmp_path / "ci.txt") == corpus.CORPUS_SHA256
    assert result.stdout.split("--- 春江 ---\n")[1].startswith("春江")
