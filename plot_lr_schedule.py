"""
plot_lr_schedule.py —— 画出 v17 起的学习率调度（不训练）：CPU 预设和完整配置各一条实线，v11–v16 的常数学习率是虚线。
曲线上的每个点都是 babygpt_v17_lr_schedule.py 里的 get_lr 算出来的。图上的字用英文，不依赖中文字体。
用法：python plot_lr_schedule.py   # 写出 notes/babygpt_v17_lr_schedule.png
笔记：notes/babygpt_v17_lr_schedule.md
"""
from pathlib import Path

from babygpt_v17_lr_schedule import CPU_PRESET, get_lr, learning_rate, max_iters, min_lr, warmup_iters
from common import apply_overrides

# ==================== 超参数（可用 --name=value 覆盖） ====================
out = "notes/babygpt_v17_lr_schedule.png"  # 图写到哪里；相对路径以仓库目录为准
# ==========================================================================

REPO = Path(__file__).resolve().parent
# (图例, 峰值, 终点, 步数, v11–v16 同一配置的常数学习率)
SCHEDULES = [
    ("CPU preset", CPU_PRESET["learning_rate"], CPU_PRESET["min_lr"], CPU_PRESET["max_iters"], 1e-3),
    ("full config", learning_rate, min_lr, max_iters, 3e-4),
]

if __name__ == "__main__":
    apply_overrides(globals())
    import matplotlib

    matplotlib.use("Agg")  # 不开窗口，直接写文件
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (name, peak, end, steps, constant) in enumerate(SCHEDULES):
        xs = range(1, steps + 1)
        ax.plot(xs, [get_lr(s, peak, end, warmup_iters, steps) for s in xs], color=f"C{k}",
                label=f"{name}: warmup {warmup_iters}, cosine {peak:g} -> {end:g}")
        ax.hlines(constant, 1, steps, colors=f"C{k}", linestyles="dashed", label=f"{name}, v11-v16: constant {constant:g}")
        print(f"{name}：第 1 步 {get_lr(1, peak, end, warmup_iters, steps):.2e}，第 {warmup_iters} 步 {peak:g}，"
              f"第 {steps} 步 {get_lr(steps, peak, end, warmup_iters, steps):g}")
    ax.set(xlabel="step", ylabel="learning rate", title="babygpt_v17_lr_schedule.py: get_lr(step)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = REPO / out
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"已写出 {path}")
