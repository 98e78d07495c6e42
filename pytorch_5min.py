"""
pytorch_5min.py —— 五分钟 PyTorch：后面的神经网络脚本只用到这里的这些东西。
依次演示：张量（创建、dtype、shape）、运算与广播、矩阵乘法的形状规则、
自动求导（requires_grad、backward、.grad）、nn.Module、优化器，
最后把它们合起来，用梯度下降从带噪声的数据里学出 y = 2x + 1 的 w 和 b。
笔记：notes/pytorch_5min.md
"""
import torch
import torch.nn as nn

from common import apply_overrides, pick_device

# ==================== 超参数（可用 --name=value 覆盖） ====================
learning_rate = 0.1  # SGD 的学习率：每一步沿着梯度的反方向走多远，取值 (0, ∞)
max_iters = 300  # 梯度下降多少步，取值 [1, ∞)
n_samples = 200  # 造多少个 (x, y) 数据点，取值 [1, ∞)
noise = 0.1  # 加到 y 上的高斯噪声的标准差，取值 [0, ∞)
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子，让每次运行的结果都一样
# ==========================================================================


class LinearModel(nn.Module):
    """只有一个 nn.Linear(1, 1) 的模型，算的就是 y = w·x + b。"""

    def __init__(self):
        super().__init__()
        # nn.Linear(1, 1)：输入 1 个数、输出 1 个数，里面有一个权重 w 和一个偏置 b，都会被学习
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)  # (N, 1) -> (N, 1)


def section(title):
    """打印一个小节的标题，让输出按概念分段。"""
    print(f"\n=== {title} ===")


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)

    section("1. 张量：创建、dtype、shape")
    # 张量就是多维数组；从 Python 列表创建时，整数默认是 int64，小数默认是 float32
    a = torch.tensor([[1, 2, 3], [4, 5, 6]], device=device)  # (2, 3)
    print("a =", a.tolist(), "| dtype:", a.dtype, "| shape:", tuple(a.shape))
    print("a.float().dtype =", a.float().dtype, "（神经网络的参数和计算几乎都用浮点数）")
    print("zeros(2, 3) =", torch.zeros(2, 3, device=device).tolist())
    print("arange(6).view(2, 3) =", torch.arange(6, device=device).view(2, 3).tolist(), "（view 只换形状，不复制数据）")
    print("randn(2, 3).shape =", tuple(torch.randn(2, 3, device=device).shape), "（标准正态分布的随机数）")
    print("a[1] =", a[1].tolist(), "| a[:, 0] =", a[:, 0].tolist(), "| a[1, 2].item() =", a[1, 2].item())

    section("2. 运算与广播")
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device=device)  # (2, 3)
    print("x * 10 =", (x * 10).tolist(), "（和一个数运算：每个元素都算一遍）")
    print("x * x =", (x * x).tolist(), "（形状相同：逐个元素相乘，不是矩阵乘法）")
    # 广播：形状从右往左对齐，长度为 1 的维（或缺少的维）会被“复制”成对方的长度
    row = torch.tensor([100.0, 200.0, 300.0], device=device)  # (3,)
    col = torch.tensor([[10.0], [20.0]], device=device)  # (2, 1)
    print("x + row =", (x + row).tolist(), "（(2, 3) + (3,)：每一行都加上 row）")
    print("x + col =", (x + col).tolist(), "（(2, 3) + (2, 1)：每一列都加上 col）")
    print("x.sum() =", x.sum().item(), "| x.sum(dim=0) =", x.sum(dim=0).tolist(), "| x.mean(dim=1) =", x.mean(dim=1).tolist())
    # keepdim=True 保留被求和的那一维（长度变成 1），结果还能直接和原张量广播，例如按行归一化
    print("x / x.sum(dim=1, keepdim=True) =", (x / x.sum(dim=1, keepdim=True)).round(decimals=3).tolist())

    section("3. 矩阵乘法：(m, k) @ (k, n) -> (m, n)")
    A = torch.randn(2, 3, device=device)  # (2, 3)
    B = torch.randn(3, 4, device=device)  # (3, 4)
    print("(2, 3) @ (3, 4) ->", tuple((A @ B).shape), "（中间的 3 必须相等，乘完就消失）")
    # 前面多出来的维被当成“批”：一次做 5 个 (2, 3) @ (3, 4)
    batch = torch.randn(5, 2, 3, device=device)  # (5, 2, 3)
    print("(5, 2, 3) @ (3, 4) ->", tuple((batch @ B).shape))
    try:
        A @ A
    except RuntimeError:
        print("(2, 3) @ (2, 3) 报错：中间的维不相等；形状对不上是最常见的错误，先打印 .shape 再找原因")

    section("4. 自动求导：requires_grad、backward、.grad")
    # requires_grad=True 让 PyTorch 记下用 w 做过的每一步运算，之后就能自动求导
    w = torch.tensor(3.0, device=device, requires_grad=True)
    y = w**2 + 2 * w  # y = w² + 2w，导数是 2w + 2，在 w = 3 处等于 8
    y.backward()
    print("y = w² + 2w，w = 3：dy/dw =", w.grad.item())
    # 梯度默认是累加的：再 backward 一次，.grad 变成 8 + 8 = 16；所以训练时每一步都要先清零
    (w**2 + 2 * w).backward()
    print("再 backward 一次不清零：w.grad =", w.grad.item(), "（累加了！这就是 optimizer.zero_grad() 的用处）")

    section("5. nn.Module：把参数和计算装在一起")
    model = LinearModel().to(device)
    # nn.Module 会自动登记里面所有层的参数，optimizer 就是通过 model.parameters() 找到它们的
    for name, p in model.named_parameters():
        print(f"{name}: shape {tuple(p.shape)}，初始值 {p.item():.4f}（随机初始化）")

    section("6. 优化器 + 训练循环：从数据里学出 y = 2x + 1")
    # 造数据：x 在 [-1, 1] 上均匀分布，y = 2x + 1 再加一点噪声；模型不知道 2 和 1，只看得到这些点
    xs = torch.rand(n_samples, 1, device=device) * 2 - 1  # (N, 1)
    ys = 2 * xs + 1 + noise * torch.randn(n_samples, 1, device=device)  # (N, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    report_every = max(1, max_iters // 5)
    for step in range(1, max_iters + 1):
        pred = model(xs)  # (N, 1)
        # 均方误差：预测和真实值之差的平方的平均，越小说明直线越贴近数据
        loss = ((pred - ys) ** 2).mean()
        # 训练的三步：清掉上一步的梯度 → 反向传播求新梯度 → 沿梯度反方向更新参数
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % report_every == 0 or step == max_iters:
            print(f"step {step:4d} | loss {loss.item():.4f}")
    w_learned, b_learned = model.linear.weight.item(), model.linear.bias.item()
    print(f"学到的 w = {w_learned:.4f}, b = {b_learned:.4f}")
