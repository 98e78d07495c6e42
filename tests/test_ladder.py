"""实验阶梯 ladder.py 的冒烟测试：用很小的预算真的跑几步，检查表格、图和 JSON 都写出来了；
context 预算的几个种子汇总成均值、标准差和范围；图在没有中文字体时改用英文标签；
不认识的步骤或预算只给一句中文错误；导入它不会跑任何东西。完整的阶梯要跑几十分钟，不在测试里跑。"""
import json
import re
import warnings

import matplotlib.image
import pytest

from common import hyperparameters
from conftest import REPO, assert_clean_error, load_script, run_ok, run_script

STEPS = ["v1", "v2", "v11"]  # 最快的两步，加上走 --preset 和 --checkpoint 那条路的 v11


def test_ladder_writes_table_plot_and_json(tiny_corpus, tmp_path):
    # v11 的检查点应该写进临时目录：仓库里的 babygpt.pt 跑前跑后都不能变
    user_checkpoint = REPO / "babygpt.pt"
    before = user_checkpoint.stat().st_mtime_ns if user_checkpoint.exists() else None
    run_ok("ladder.py", "--max_iters=20", "--eval_iters=2", f"--steps={','.join(STEPS)}", "--sample_steps=v1,v11",
           f"--data_path={tiny_corpus}", f"--out_dir={tmp_path}", "--max_new_tokens=10")
    after = user_checkpoint.stat().st_mtime_ns if user_checkpoint.exists() else None
    assert after == before

    note = (tmp_path / "experiment_ladder.md").read_text(encoding="utf-8")
    for name in STEPS:
        assert re.search(rf"^\| {name} \| .+ \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d,]+ \| [\d.]+ 秒 \|$", note, re.MULTILINE), note
    assert "--preset=cpu" in note and "experiment_ladder.png" in note

    report = json.loads((tmp_path / "experiment_ladder.json").read_text(encoding="utf-8"))
    assert list(report["results"]) == STEPS
    for result in report["results"].values():
        assert result["params"] > 0 and result["wall_seconds"] > 0
        # 只训练 20 步、每 200 步评估一次：曲线上只有最后一步那一个点
        assert [point[0] for point in result["curve"]] == [20]
        assert result["sample"].startswith("春江")
    # v11 比 v10 以前的模型大得多（CPU 预设是 4 层、128 维）
    assert report["results"]["v11"]["params"] > 10 * report["results"]["v2"]["params"]

    image = matplotlib.image.imread(tmp_path / "experiment_ladder.png")
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 100


def test_gpu_budget_writes_separate_files(tiny_corpus, tmp_path):
    # 只跑最快的 v1：检查 gpu 预算的结果写到 *_gpu.*，不覆盖 CPU 那张表
    run_ok("ladder.py", "--budget=gpu", "--max_iters=20", "--eval_iters=2", "--steps=v1", "--sample_steps=v1",
           f"--data_path={tiny_corpus}", f"--out_dir={tmp_path}", "--max_new_tokens=10", "--device=cpu")
    assert sorted(path.name for path in tmp_path.glob("experiment_ladder*")) == [
        "experiment_ladder_gpu.json", "experiment_ladder_gpu.md", "experiment_ladder_gpu.png"]
    report = json.loads((tmp_path / "experiment_ladder_gpu.json").read_text(encoding="utf-8"))
    assert report["settings"]["block_size"] == 64


def test_unknown_step_or_budget_is_a_clean_error(tmp_path):
    for arg, named in [("--steps=v1,v99", "v99"), ("--sample_steps=v0", "v0"), ("--budget=tpu", "tpu")]:
        result = run_script("ladder.py", arg, f"--out_dir={tmp_path}")
        assert_clean_error(result)
        assert named in result.stderr
        assert not list(tmp_path.iterdir())


def test_failing_step_shows_its_stderr(tiny_corpus, tmp_path):
    # 提示词里有语料之外的字：脚本自己拒绝，ladder 要把它的中文错误转述出来，而不是一个 traceback
    result = run_script("ladder.py", "--steps=v1", "--prompt=ZZ", "--max_iters=1", f"--data_path={tiny_corpus}",
                        f"--out_dir={tmp_path / 'out'}")
    assert_clean_error(result)
    assert "babygpt_v1.py" in result.stderr and "Z" in result.stderr


def test_import_has_no_side_effects_and_help_lists_everything(capsys):
    load_script("ladder.py")
    assert capsys.readouterr() == ("", "")
    result = run_ok("ladder.py", "--help")
    for name in hyperparameters(REPO / "ladder.py"):
        assert f"--{name}=" in result.stdout


def test_context_budget_reports_mean_and_spread_over_seeds(tiny_corpus, tmp_path):
    # context 预算的冒烟测试：2 步 × 2 个种子，两个子进程同时跑；表格和 JSON 里要有每一步的均值、标准差和范围
    run_ok("ladder.py", "--budget=context", "--max_iters=10", "--eval_iters=2", "--steps=v1,v2", "--n_seeds=2",
           "--jobs=2", "--threads=1", "--sample_steps=v1", f"--data_path={tiny_corpus}", f"--out_dir={tmp_path}",
           "--max_new_tokens=5", "--device=cpu")
    assert sorted(path.name for path in tmp_path.glob("experiment_ladder*")) == [
        "experiment_ladder_context.json", "experiment_ladder_context.md", "experiment_ladder_context.png"]
    report = json.loads((tmp_path / "experiment_ladder_context.json").read_text(encoding="utf-8"))
    assert report["seeds"] == [42, 43] and report["settings"]["block_size"] == 32 and report["threads"] == 1
    assert list(report["results"]) == ["v1", "v2"]
    note = (tmp_path / "experiment_ladder_context.md").read_text(encoding="utf-8")
    assert "| 均值 | 标准差 | 范围 |" in note
    for name, r in report["results"].items():
        vals = [run["val_loss"] for run in r["runs"]]
        assert [run["seed"] for run in r["runs"]] == [42, 43] and r["val_losses"] == vals
        assert r["val_loss_min"] == min(vals) and r["val_loss_max"] == max(vals)
        assert abs(r["val_loss_mean"] - sum(vals) / 2) < 1e-4
        assert abs(r["val_loss_std"] - abs(vals[0] - vals[1]) / 2 ** 0.5) < 1e-4
        assert all(run["cpu_seconds"] > 0 for run in r["runs"]) and r["cpu_seconds_max"] > 0
        row = (rf"^\| {name} \| .+ \| {vals[0]:.4f} / {vals[1]:.4f} \| {r['val_loss_mean']:.4f} \| {r['val_loss_std']:.4f} "
               rf"\| {min(vals):.4f}–{max(vals):.4f} \| .+ \| \d+ / \d+ 秒 \|$")
        assert re.search(row, note, re.MULTILINE), note
    # 只重画：从 JSON 重新写出的表格和刚才的一模一样
    (tmp_path / "experiment_ladder_context.png").unlink()
    before = note
    run_ok("ladder.py", "--budget=context", "--replot", f"--out_dir={tmp_path}")
    assert (tmp_path / "experiment_ladder_context.md").read_text(encoding="utf-8") == before
    assert (tmp_path / "experiment_ladder_context.png").exists()


def test_stage4_budget_gives_every_step_its_cpu_preset_and_a_checkpoint(tiny_corpus, tmp_path):
    # stage4 预算：v11 和 v19 都用各自的 CPU 预设（同样大的模型），步数统一；v12 起的脚本关掉 wandb
    run_ok("ladder.py", "--budget=stage4", "--max_iters=4", "--eval_iters=1", "--steps=v11,v19", "--sample_steps=v19",
           "--jobs=2", "--threads=1", f"--data_path={tiny_corpus}", f"--out_dir={tmp_path}", f"--checkpoint_dir={tmp_path / 'ckpt'}",
           "--max_new_tokens=5", "--device=cpu")
    report = json.loads((tmp_path / "experiment_ladder_stage4.json").read_text(encoding="utf-8"))
    assert report["seeds"] == [42, 43] and list(report["results"]) == ["v11", "v19"]
    v11, v19 = report["results"]["v11"], report["results"]["v19"]
    # 同样的 4 层、128 维：v19 少了位置向量表（64 × 128），又和输出层共享了字向量表（vocab × 128 加上无关的偏置不变）
    vocab = len(set(tiny_corpus.read_text(encoding="utf-8")))
    assert v11["params"] - v19["params"] == 64 * 128 + vocab * 128
    assert all(run["curve"][-1][0] == 4 for r in (v11, v19) for run in r["runs"])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "babygpt_v11_seed42.pt", "babygpt_v11_seed43.pt", "babygpt_v19_seed42.pt", "babygpt_v19_seed43.pt"]
    assert "实验阶梯：v11 → v19" in (tmp_path / "experiment_ladder_stage4.md").read_text(encoding="utf-8")


def fake_results(seeds):
    """给画图函数用的假结果：两步，每步 len(seeds) 个种子，曲线上两个点。"""
    def run(seed, val):
        return {"seed": seed, "train_loss": val - 0.3, "val_loss": val, "curve": [[100, val + 0.5, val + 0.6], [200, val - 0.3, val]]}

    results = {}
    for name, base in (("v1", 5.5), ("v3", 5.2)):
        runs = [run(s, base + 0.01 * i) for i, s in enumerate(seeds)]
        vals = [r["val_loss"] for r in runs]
        results[name] = {"seeds": seeds, "val_losses": vals, "val_loss_mean": sum(vals) / len(vals),
                         "val_loss_min": min(vals), "val_loss_max": max(vals), "train_loss_mean": base - 0.3,
                         "runs": runs, **runs[0]}
    return results


def draw(ladder, plot_name, path):
    """画一张图，返回 (图上用的语言, 画图时 matplotlib 发出的“缺字形”警告)。"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lang = getattr(ladder, plot_name)(fake_results([42, 43, 44]), path)
    return lang, [str(w.message) for w in caught if "missing from" in str(w.message)]


def test_plot_falls_back_to_english_without_a_chinese_font(tmp_path, monkeypatch, capsys):
    # 找不到中文字体：标签换成英文，画出来没有一个缺字形的方框
    ladder = load_script("ladder.py")
    monkeypatch.setattr(ladder, "cjk_font", lambda text: None)
    for plot_name in ("plot", "plot_seeds"):
        lang, missing = draw(ladder, plot_name, tmp_path / f"{plot_name}.png")
        assert lang == "en" and missing == []
        assert (tmp_path / f"{plot_name}.png").stat().st_size > 0
    assert "改用英文" in capsys.readouterr().out
    # 英文标签本身不含汉字
    assert not any(ord(c) >= 0x2E80 for c in "".join(ladder.LABELS["en"].values()))


def test_plot_uses_chinese_labels_when_a_chinese_font_is_installed(tmp_path):
    ladder = load_script("ladder.py")
    font = ladder.cjk_font("".join(ladder.LABELS["zh"].values()))
    if font is None:
        pytest.skip("这台机器没有能显示中文的字体（例如 fonts-noto-cjk），中文标签这条路测不了")
    for plot_name in ("plot", "plot_seeds"):
        lang, missing = draw(ladder, plot_name, tmp_path / f"{plot_name}.png")
        assert lang == "zh" and missing == [], missing
