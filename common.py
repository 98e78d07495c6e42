"""
common.py —— 每个教程脚本都用一行 import 引入的小工具，让它们不出现在步骤之间的 diff 里：
  apply_overrides：用 --name=value 覆盖脚本顶部“超参数”块里的任何一个值，并按注释末尾写明的取值范围检查；
  pick_device：auto 时依次选 cuda、mps、cpu；
  read_text：读训练文本；默认的 ci.txt 不存在时自动构建；
  hardware：基准脚本用它在结果里写明 CPU、核数和版本。
笔记：notes/hyperparameters.md
"""
import math
import os
import platform
import re
import sys
from pathlib import Path

from corpus import CorpusError, build_corpus

DEFAULT_CORPUS = "ci.txt"
FENCE = "# ==="
LINE = re.compile(r"^(\w+)\s*=\s*(.+?)(?:\s+#\s*(.*))?$")
# 取值范围写在超参数注释的末尾：数用区间，例如 [1, ∞)、[0, 1)、(0, ∞)；有固定选项的字符串用集合，例如 {auto, cpu}
INTERVAL = re.compile(r"([\[(])\s*(-?[\d.e+-]+|-∞)\s*,\s*(-?[\d.e+-]+|∞)\s*([\])])\s*$")
CHOICES = re.compile(r"\{([^{}]+)\}\s*$")


def hyperparameters(script_path):
    """从脚本源码里两条 “# ===” 围栏之间读出超参数名和它们的中文注释。"""
    lines = Path(script_path).read_text(encoding="utf-8").splitlines()
    fences = [i for i, line in enumerate(lines) if line.startswith(FENCE)]
    found = {}
    for line in lines[fences[0] + 1:fences[1]]:
        match = LINE.match(line)
        if match:
            found[match.group(1)] = match.group(3) or ""
    return found


def parse_value(text, default):
    """按默认值的类型解析命令行上的字符串；解析失败抛 ValueError。"""
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("布尔值（True 或 False）")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError("整数") from None
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError("有限的数（例如 3e-4）")
        return value
    if isinstance(default, list):
        items = [item for item in text.split(",") if item]
        if not items:
            raise ValueError("至少一个值（多个值用逗号分隔）")
        return items
    if default and not text:
        raise ValueError("一个非空的值")
    return text


def out_of_range(value, comment):
    """value 不在注释末尾写明的范围里时，返回描述范围的文字；在范围里或没写范围时返回 None。"""
    interval = INTERVAL.search(comment)
    if interval and isinstance(value, (int, float)) and not isinstance(value, bool):
        left, low, high, right = interval.groups()
        low, high = float(low.replace("∞", "inf")), float(high.replace("∞", "inf"))
        inside = (value >= low if left == "[" else value > low) and (value <= high if right == "]" else value < high)
        return None if inside else f"取值范围 {interval.group(0).strip()}"
    choices = CHOICES.search(comment)
    if choices and isinstance(value, str):
        allowed = [choice.strip() for choice in choices.group(1).split(",")]
        return None if value in allowed else "可选值 " + "、".join(allowed)
    return None


def apply_overrides(script_globals, argv=None):
    """用 --name=value 覆盖超参数（类型按默认值检查），返回被覆盖的 {名字: 新值}。"""
    argv = sys.argv[1:] if argv is None else argv
    names = hyperparameters(script_globals["__file__"])
    valid = "可用的超参数：" + ", ".join(names)
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"相对路径都相对于当前目录（现在是 {os.getcwd()}）。")
        for name, comment in names.items():
            value = script_globals[name]
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            print(f"  --{name}={shown}".ljust(34) + comment)
        sys.exit(0)
    overrides = {}
    for arg in argv:
        name, has_value, text = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or name not in names:
            print(f"错误：不认识的参数 {arg}。{valid}", file=sys.stderr)
            sys.exit(2)
        default = script_globals[name]
        if not has_value and isinstance(default, bool):
            text = "true"
        try:
            overrides[name] = parse_value(text, default)
        except ValueError as e:
            fail(f"--{name} 需要{e}，收到的是 {text!r}。{valid}")
        bad_range = out_of_range(overrides[name], names[name])
        if bad_range:
            fail(f"--{name}={text} 超出了{bad_range}。{valid}")
    script_globals.update(overrides)
    if "n_head" in names and script_globals["n_embd"] % script_globals["n_head"] != 0:
        fail(f"n_embd={script_globals['n_embd']} 必须能被 n_head={script_globals['n_head']} 整除。{valid}")
    if overrides:
        print("覆盖的超参数：" + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    sys.excepthook = quiet_ctrl_c
    return overrides


def fail(message):
    """参数不对：在标准错误上打印一行中文说明，以退出码 2 结束（和 argparse 的约定一样）。"""
    print(f"错误：{message}", file=sys.stderr)
    sys.exit(2)


def quiet_ctrl_c(kind, value, traceback):
    """Ctrl-C 只打印一句话，不打印 traceback；其他异常照常显示。"""
    if issubclass(kind, KeyboardInterrupt):
        print("\n已中断（Ctrl-C）。", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


def pick_device(name):
    """把 auto / cpu / cuda / mps 变成一个真正可用的设备名，并打印出来。"""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
    }
    if name == "auto":
        name = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    if not available.get(name):
        fail(f"设备 {name!r} 不可用。可选：auto, " + ", ".join(d for d, ok in available.items() if ok))
    print(f"使用设备：{name}")
    return name


def read_text(data_path):
    """读 UTF-8 训练文本（相对路径相对于当前目录）。默认的 ci.txt 不存在时先自动构建；读不了或为空时给出中文说明并退出。"""
    path = Path(data_path)
    if data_path == DEFAULT_CORPUS and not path.exists():
        print("第一次运行：正在构建语料 ci.txt ……", file=sys.stderr)
        try:
            build_corpus(path)
        except CorpusError as e:
            sys.exit(f"错误：{e}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"错误：读不了训练文本 {path}（{e}）。--data_path 要指向一个 UTF-8 文本文件。")
    if not text:
        sys.exit(f"错误：训练文本 {path} 是空的。")
    return text


def hardware():
    """CPU 型号、核数和 torch 版本，写进结果里，别人才能对照自己的机器。"""
    import torch

    cpu = platform.processor() or "未知 CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{cpu}，{os.cpu_count()} 核，Python {platform.python_version()}，torch {torch.__version__}"
