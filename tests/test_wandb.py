"""v12：记录超参数、每次评估的指标和样本表；没有账号、没有网络、没装 wandb 或 wandb 出错时，训练照常完成。
指标用一个替身 wandb 模块读回（它把 v12 对 wandb 公开接口的每次调用写进一个 JSON 文件），不去解析 wandb 的私有文件格式；
真正的 wandb 只检查离线运行的结果：运行目录、wandb sync 提示和样本表文件。"""
import json

import pytest

from conftest import TINY_TEXT, run_ok, samples

RUN = ["--preset=cpu", "--max_iters=20", "--eval_interval=10", "--eval_iters=2", "--n_layer=1", "--n_embd=32",
       "--n_head=4", "--block_size=16", "--max_new_tokens=8"]

# 替身 wandb：只实现 v12 用到的公开接口（init、Run.log、Run.finish、Table），把调用记到 $FAKE_WANDB_LOG
FAKE_WANDB = '''
import json, os, tempfile

calls = []


def _write():
    with open(os.environ["FAKE_WANDB_LOG"], "w", encoding="utf-8") as f:
        json.dump(calls, f, ensure_ascii=False)


class Table:
    def __init__(self, columns, data):
        self.columns, self.data = columns, data


class Run:
    dir = os.path.join(tempfile.gettempdir(), "fake-wandb-run", "files")

    def log(self, data, step=None):
        data = {k: {"columns": v.columns, "data": v.data} if isinstance(v, Table) else v for k, v in data.items()}
        calls.append({"call": "log", "data": data, "step": step})
        _write()

    def finish(self):
        calls.append({"call": "finish"})
        _write()


def init(project, config, mode):
    if os.environ.get("FAKE_WANDB_FAIL"):
        raise RuntimeError("替身 wandb：初始化失败")
    calls.append({"call": "init", "project": project, "config": config, "mode": mode})
    _write()
    return Run()
'''


@pytest.fixture
def fake_wandb(tmp_path):
    """把替身 wandb 放在 PYTHONPATH 最前面；返回 (环境变量, 调用记录文件)。"""
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "wandb.py").write_text(FAKE_WANDB, encoding="utf-8")
    log = tmp_path / "calls.json"
    return {"PYTHONPATH": str(folder), "FAKE_WANDB_LOG": str(log)}, log


def train(tmp_path, *args, env=None):
    corpus = tmp_path / "tiny.txt"
    if not corpus.exists():
        corpus.write_text(TINY_TEXT, encoding="utf-8")
    return run_ok("babygpt_v12_wandb.py", f"--data_path={corpus}", f"--checkpoint={tmp_path / 'c.pt'}", *RUN, *args,
                  cwd=tmp_path, env=env)


def test_logs_config_metrics_and_samples(tmp_path, fake_wandb):
    env, log = fake_wandb
    result = train(tmp_path, "--wandb_mode=offline", env=env)
    calls = json.loads(log.read_text(encoding="utf-8"))
    init = calls[0]
    assert init["call"] == "init" and init["mode"] == "offline" and init["project"] == "babygpt"
    # 记录的是 CPU 预设和命令行覆盖之后真正用到的值
    assert init["config"]["max_iters"] == 20 and init["config"]["n_embd"] == 32 and init["config"]["dropout"] == 0.1
    metrics = [c for c in calls if c["call"] == "log" and "val_loss" in c["data"]]
    assert [m["step"] for m in metrics] == [10, 20]
    assert all(set(m["data"]) == {"train_loss", "val_loss", "tokens_per_sec", "elapsed_seconds"} for m in metrics)
    table = next(c["data"]["samples"] for c in calls if c["call"] == "log" and "samples" in c["data"])
    assert table["columns"] == ["prompt", "sample"]
    assert [row[0] for row in table["data"]] == ["春江", "往事"]
    assert table["data"][0][1] == samples(result.stdout)["春江"].rstrip("\n")
    assert calls[-1]["call"] == "finish"


def test_auto_mode_is_offline_without_a_key(tmp_path, fake_wandb):
    env, log = fake_wandb
    env = {**env, "WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    train(tmp_path, env=env)
    assert json.loads(log.read_text(encoding="utf-8"))[0]["mode"] == "offline"


def test_wandb_init_failure_never_stops_training(tmp_path, fake_wandb):
    env, _ = fake_wandb
    result = train(tmp_path, "--wandb_mode=online", env={**env, "FAKE_WANDB_FAIL": "1"})
    assert "警告：wandb 初始化失败" in result.stderr
    assert samples(result.stdout)["春江"].startswith("春江")


def test_training_runs_without_wandb_installed(tmp_path):
    # 在 PYTHONPATH 最前面放一个一导入就报 ImportError 的假 wandb，模拟没装 wandb 的机器
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "wandb.py").write_text('raise ImportError("假装没有安装 wandb")\n', encoding="utf-8")
    result = train(tmp_path, env={"PYTHONPATH": str(fake)})
    assert "没有安装 wandb" in result.stderr
    assert not (tmp_path / "wandb").exists()
    assert samples(result.stdout)["往事"].startswith("往事")


def test_real_wandb_offline_run_without_account_or_network(tmp_path):
    pytest.importorskip("wandb")
    # 没有密钥、HOME 里没有 .netrc：auto 选离线；离线运行写在 ./wandb/ 下，并提示怎样上传
    env = {"WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none"), "WANDB_SILENT": "true"}
    result = train(tmp_path, env=env)
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    assert f"wandb sync {run_dirs[0]}" in result.stdout
    table = json.loads(next(run_dirs[0].glob("files/media/table/samples_*.table.json")).read_text(encoding="utf-8"))
    assert table["columns"] == ["prompt", "sample"]
    assert [row[0] for row in table["data"]] == ["春江", "往事"]
