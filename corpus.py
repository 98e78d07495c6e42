"""
corpus.py —— 构建训练语料 ci.txt（南唐词 + 全宋词），逐字节可复现。

来源：chinese-poetry（MIT 许可），固定在提交 99ebbef。
取数据的顺序：
  1. --source DIR 或环境变量 CHINESE_POETRY_DIR 指向的本地 chinese-poetry 仓库；
  2. 否则从 GitHub 下载这 23 个 JSON 文件，缓存在 .cache/chinese-poetry/，第二次构建不再联网。

用法：
  python corpus.py                       # 构建 ci.txt
  python corpus.py --source ~/chinese-poetry --out ci.txt
任何失败都不会留下半个 ci.txt：先写临时文件，校验 sha256 后再改名。
笔记：notes/corpus.md
"""
import hashlib
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

COMMIT = "99ebbef7e1345c0985c44b9fd96a3f9e776f117b"
BASE_URL = f"https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/{COMMIT}/"
CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "chinese-poetry"
CORPUS_SHA256 = "628bd99b88d7c4129ac36cc5f86b40c9071423529227e03f07e4359d7ed7ce69"
# 23 个源文件，按拼接顺序排列：南唐词在前，全宋词按编号从小到大（不含 ci.song.2019y.json）
SOURCE_FILES = {
    "五代诗词/nantang/poetrys.json": "278cb8b6f768cff315a00a8cb71d16400cc00bb442ad8e5c9eb3b832515eb079",
    "宋词/ci.song.0.json": "7761bc5ef50305753ea3dcea9e1ef3164e153e3ee366169e9c5a9a7d85b21b22",
    "宋词/ci.song.1000.json": "5f79a2d9011e6d414f04e51176c5d4f4c762fd784dce98b035968367b6f2ef4e",
    "宋词/ci.song.2000.json": "f700d8e14df62d371dfba7ce18bf1641c304540907b26b68d356c4b6b256fe8d",
    "宋词/ci.song.3000.json": "1791391a8a2ca855e133f7ea48bf0c104b3890d628ae2929f9378960a66c1427",
    "宋词/ci.song.4000.json": "48c3e33bab920e17929ea08300c4c5ca72b246669ed5767e5cb985d894514150",
    "宋词/ci.song.5000.json": "1e10ee4be18e225c2efa0bb8d58691ebb6d40cd83588f308d9635a37392bdadd",
    "宋词/ci.song.6000.json": "8ff2b21b4e92a435f72da04fcb935a6a3498e839cde5c837ea418871f133c248",
    "宋词/ci.song.7000.json": "8fe3f7ac40ab7d6c80cdd42305e848c1dc51cff26bc42b335ddfdfaccd48d1ba",
    "宋词/ci.song.8000.json": "8d9c26a4aa62264d2eea853944e47a1420dd94e7465bee7c3e52cec2cf8bd653",
    "宋词/ci.song.9000.json": "bd6a4d90b17ef195f32e38dfa483b0d39d671db3cdd5b462b292aac6916f26a6",
    "宋词/ci.song.10000.json": "8d37b015132bf9776fb41c44d445572d2cd9bf5e250dde213596c480e5962545",
    "宋词/ci.song.11000.json": "9a4f5082638f82339afbde99f1af7bae1719207f77d5516cb8f6d370c9c1d0c9",
    "宋词/ci.song.12000.json": "a89094fed6b3003c171a9036052ff6a289367b4dd68d97c000b5f5e90ea2df2f",
    "宋词/ci.song.13000.json": "dd51b268dec508d44a18e2d4a84edd109ff8c532b6eace4160ea88674f62515c",
    "宋词/ci.song.14000.json": "9d7410bcaebc31685e3d999c6af218a3583fd8e9f57cacf640c66607121e2dbf",
    "宋词/ci.song.15000.json": "5e441c85494955290138ed8561decb3f302d3628fe390cea3477e1d446039525",
    "宋词/ci.song.16000.json": "d003d66c58e40fab1d2a40f17f6149eef53a126c7e54b035153ceae4fe707742",
    "宋词/ci.song.17000.json": "b46b9f908b5bb0a3b4dd18f268c233a50b8b794d6ab1ec79afcb3612792f0574",
    "宋词/ci.song.18000.json": "751cf8ee2a925f4957d010e6f4bf46cc9e0a90a176cfb731185ba43ecb72b14b",
    "宋词/ci.song.19000.json": "c6becb6a81cc04e25564f501ff768482b6c328d976c48e2003c8b8bd94ef4612",
    "宋词/ci.song.20000.json": "1dfc08051969ab2ecdfa3eea8b29bf79d3dfe9ad1133127f25f622c2b14348c2",
    "宋词/ci.song.21000.json": "3344ba453ae7840339944ce29e4295b5b668d79f79210a99e6e1a58ee874dbc5",
}
HOW_TO_FIX = (
    "解决办法：git clone https://github.com/chinese-poetry/chinese-poetry ，"
    f"git checkout {COMMIT[:7]}，再设置环境变量 CHINESE_POETRY_DIR 指向它，然后重新运行。"
)


class CorpusError(Exception):
    """构建语料失败；消息是给学习者看的中文说明。"""


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def write_atomically(path, data):
    """先写同目录下的临时文件再改名：中途失败不会留下半个文件。
    临时文件名每次都不同（mkstemp），两个进程同时第一次构建也不会互相写坏对方的临时文件。"""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def download(url, timeout=30, retries=3):
    """下载一个文件，网络出错时等一会儿重试；地址写错或服务器说“没有这个文件”（4xx）时重试也没用，直接报错。"""
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.read()
        except ValueError as e:  # 例如 CHINESE_POETRY_BASE_URL 不是 http(s):// 开头的地址
            raise CorpusError(f"下载地址不对：{url}（{e}）\n{HOW_TO_FIX}") from None
        except (OSError, http.client.HTTPException) as e:  # 连不上、超时、读到一半断开（IncompleteRead）……
            client_error = isinstance(e, urllib.error.HTTPError) and 400 <= e.code < 500
            if client_error or attempt == retries:
                raise CorpusError(f"下载失败（试了 {attempt} 次）：{url}\n原因：{e}\n{HOW_TO_FIX}") from None
            print(f"  下载出错（{e}），{attempt} 秒后重试……", file=sys.stderr)
            time.sleep(attempt)


def fetch_sources(source_dir=None, base_url=None, cache_dir=CACHE_DIR):
    """按顺序返回 23 个源文件的字节内容：本地目录优先，否则下载（带缓存）。"""
    source_dir = source_dir or os.environ.get("CHINESE_POETRY_DIR")
    base_url = base_url or os.environ.get("CHINESE_POETRY_BASE_URL") or BASE_URL
    contents = []
    for i, (name, expected) in enumerate(SOURCE_FILES.items(), 1):
        if source_dir:
            path = Path(source_dir) / name
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CorpusError(f"读不到 {path}：{e.strerror}。CHINESE_POETRY_DIR 应该指向 chinese-poetry 仓库的根目录。") from None
            where = str(path)
        else:
            cached = Path(cache_dir) / name
            if cached.exists() and sha256_of(cached.read_bytes()) == expected:
                data, where = cached.read_bytes(), f"缓存 {cached}"
            else:
                print(f"[{i}/{len(SOURCE_FILES)}] 下载 {name} ……", file=sys.stderr, flush=True)
                data = download(base_url + urllib.parse.quote(name))
                where = base_url + name
                if sha256_of(data) == expected:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    write_atomically(cached, data)
        if sha256_of(data) != expected:
            raise CorpusError(f"{name} 的 sha256 不对（来自 {where}），文件被改动过或不是提交 {COMMIT[:7]} 的版本。\n{HOW_TO_FIX}")
        contents.append((name, data))
    return contents


def poems_to_text(contents):
    """每首词写成“词牌 作者”一行、正文逐句一行，词与词之间空一行。"""
    poems = []
    for name, data in contents:
        try:
            for poem in json.loads(data.decode("utf-8")):
                poems.append(f"{poem['rhythmic']} {poem['author']}\n" + "\n".join(poem["paragraphs"]) + "\n")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorpusError(f"{name} 不是预期格式的 JSON（{type(e).__name__}: {e}）。\n{HOW_TO_FIX}") from None
    return "\n".join(poems), len(poems)


def build_corpus(out_path="ci.txt", source_dir=None, base_url=None, cache_dir=CACHE_DIR):
    """构建 ci.txt，校验整体 sha256，原子地写出；返回词的首数。"""
    text, n_poems = poems_to_text(fetch_sources(source_dir, base_url, cache_dir))
    data = text.encode("utf-8")
    if sha256_of(data) != CORPUS_SHA256:
        raise CorpusError(f"拼出的语料 sha256 不对：{sha256_of(data)}，应为 {CORPUS_SHA256}。\n{HOW_TO_FIX}")
    write_atomically(out_path, data)
    print(f"已构建 {out_path}：{n_poems:,} 首词，{len(text):,} 个字符，{len(set(text)):,} 个不同的字。", file=sys.stderr)
    return n_poems


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(description="构建训练语料 ci.txt（南唐词 + 全宋词）")
    parser.add_argument("--source", help="本地 chinese-poetry 仓库目录（默认读环境变量 CHINESE_POETRY_DIR）")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "ci.txt"), help="输出文件")
    parser.add_argument("--base-url", help="下载地址前缀（默认 GitHub 上固定提交的原始文件）")
    args = parser.parse_args(argv)
    try:
        build_corpus(args.out, args.source, args.base_url)
    except CorpusError as e:
        sys.exit(f"错误：{e}")


if __name__ == "__main__":
    main(sys.argv[1:])
