"""
bench_bigram.py —— 基准测试（不是单元测试）：列表版 simplebigrammodel.py 对比张量版 simplebigrammodel_torch.py。
每个脚本作为子进程各跑 runs 次（两个脚本交替运行，减少机器状态漂移的影响），分别在默认 max_iters
和 scale 倍 max_iters 下测两样东西：脚本自己打印的“计数用时 X 秒”，以及整个进程的墙钟时间
（包括启动 Python、import torch、读文本、编码和生成）。最后再量一遍第一阶段其余脚本用默认参数的整个进程用时。
结果取中位数，以 Markdown 表格打印到标准输出。
用法：python bench_bigram.py > notes/bench_bigram_output.md
笔记：notes/simplebigrammodel_torch.md
"""
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import apply_overrides, hardware, hyperparameters

# ==================== 超参数（可用 --name=value 覆盖） ====================
runs = 5  # 每种配置各运行多少次，取中位数，取值 [1, ∞)
scale = 10  # 第二组实验把两个脚本默认的 max_iters 放大多少倍，取值 [1, ∞)
data_path = "ci.txt"  # 传给两个脚本的训练文本
# ==========================================================================

REPO = Path(__file__).resolve().parent
SCRIPTS = {"列表": "simplebigrammodel.py", "张量": "simplebigrammodel_torch.py"}
# 第一阶段的其余脚本只量整个进程的用时，给 README 的路线图用
OTHERS = ["simplemodel.py", "simplemodel_with_comments.py", "simplebigrammodel_with_comments.py", "pytorch_5min.py"]
COUNT_LINE = re.compile(r"计数用时 ([\d.]+) 秒")


def default_max_iters(script):
    """从脚本的超参数块里读出 max_iters 的默认值（不 import 脚本，也就不必 import torch）。"""
    match = re.search(r"^max_iters = (\d+)", (REPO / script).read_text(encoding="utf-8"), re.MULTILINE)
    return int(match.group(1))


def run_once(script, args):
    """运行一次脚本，返回 (计数用时, 整个进程的墙钟时间)，单位秒；脚本不打印计数用时时前者为 None。"""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = COUNT_LINE.search(result.stdout)
    if result.returncode != 0:
        sys.exit(f"错误：{script} {' '.join(args)} 运行失败（退出码 {result.returncode}）：\n{result.stderr}")
    return (float(match.group(1)) if match else None), wall


def ratio(slow, fast):
    """列表版比张量版慢多少倍。"""
    return f"{slow / fast:.1f}×" if fast > 0 else "—"


def script_args(script, multiplier):
    """一次运行要传的命令行参数：multiplier 为 1 时用脚本默认的 max_iters。"""
    args = [f"--data_path={data_path}"]
    if multiplier != 1:
        args.append(f"--max_iters={default_max_iters(script) * multiplier}")
    return args


if __name__ == "__main__":
    apply_overrides(globals())
    multipliers = [1, scale]
    results = {}
    for multiplier in multipliers:
        for i in range(runs):
            # 两个脚本交替运行：机器忽快忽慢时，两边受到的影响差不多
            for kind, script in SCRIPTS.items():
                print(f"[{multiplier}× max_iters，第 {i + 1}/{runs} 次] {script} ……", file=sys.stderr, flush=True)
                results.setdefault((multiplier, kind), []).append(run_once(script, script_args(script, multiplier)))
    # pytorch_5min.py 不读文本，没有 data_path
    other_args = {s: [f"--data_path={data_path}"] if "data_path" in hyperparameters(REPO / s) else [] for s in OTHERS}
    others = {script: statistics.median(run_once(script, other_args[script])[1] for _ in range(runs)) for script in OTHERS}

    print("# bigram 计数：列表 vs 张量\n")
    print(f"- 硬件：{hardware()}")
    print(f"- 命令：`python bench_bigram.py{''.join(' ' + a for a in sys.argv[1:])}`，每种配置运行 {runs} 次，取中位数；实际运行的是：")
    for multiplier in multipliers:
        for script in SCRIPTS.values():
            print(f"  - `python {' '.join([script, *script_args(script, multiplier)])}`")
    print("- 计数用时：脚本自己打印的“计数用时”；整个进程：从启动子进程到它退出的墙钟时间（含 import torch、读文本、编码、生成）。\n")
    print("| max_iters | 计数用时：列表 | 计数用时：张量 | 列表/张量 | 整个进程：列表 | 整个进程：张量 | 列表/张量 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for multiplier in multipliers:
        count = {kind: statistics.median(c for c, _ in results[(multiplier, kind)]) for kind in SCRIPTS}
        wall = {kind: statistics.median(w for _, w in results[(multiplier, kind)]) for kind in SCRIPTS}
        iters = default_max_iters(SCRIPTS["列表"]) * multiplier
        print(
            f"| {iters:,} | {count['列表']:.3f} 秒 | {count['张量']:.3f} 秒 | {ratio(count['列表'], count['张量'])} "
            f"| {wall['列表']:.2f} 秒 | {wall['张量']:.2f} 秒 | {ratio(wall['列表'], wall['张量'])} |"
        )
    print(f"\n第一阶段其余脚本，默认参数，整个进程的墙钟时间，{runs} 次取中位数：\n")
    print("| 命令 | 整个进程 |")
    print("|---|---:|")
    for script, wall in others.items():
        print(f"| `python {' '.join([script, *other_args[script]])}` | {wall:.2f} 秒 |")
