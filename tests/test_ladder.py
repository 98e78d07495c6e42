"""实验阶梯 ladder.py 的冒烟测试：用很小的预算真的跑几步，检查表格、图和 JSON 都写出来了；
不认识的步骤或预算只给一句中文错误；导入它不会跑任何东西。完整的阶梯在 2 核 CPU 上要约 18 分钟，不在测试里跑。"""
import json
import re

import matplotlib.image

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
