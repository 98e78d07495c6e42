"""
simplebigrammodel_with_comments.py —— simplebigrammodel.py 的逐行注释版：代码与 simplebigrammodel.py 一字不差，
只是每一行上面都多了中文注释，讲清楚 Tokenizer、batch_size / block_size、为什么 y 是 x 错开一位、
为什么要有“零计数时退回均匀随机”。读懂它，后面的 babygpt 系列就有了骨架。
笔记：notes/simplebigrammodel.md
"""
# random 负责随机：随机挑文本片段、按权重抽下一个字
import random
# sys.exit 用来带着一句中文说明结束程序
import sys
# time.time() 返回当前时刻（秒），用来量计数花了多久
import time

# 本仓库的两个小工具：apply_overrides 处理命令行上的 --名字=值，read_text 读训练文本
from common import apply_overrides, read_text

# 两条 “# ===” 之间是超参数，每一个都能在命令行上用 --名字=值 修改，python 脚本名 --help 可以列出它们
# ==================== 超参数（可用 --name=value 覆盖） ====================
# batch_size：一“批”里有几段文本。每一步不是只看一段，而是同时看 batch_size 段
batch_size = 32  # 每一步随机抽多少段文本，取值 [1, ∞)
# block_size：每段文本的长度。一段长 8 的文本里有 8 对“当前字 → 下一个字”
block_size = 8  # 每段文本有多少个字，取值 [1, ∞)
# 一共抽多少批；总共数了 max_iters × batch_size × block_size 对字
max_iters = 8000  # 训练（计数）多少步，取值 [1, ∞)
max_new_tokens = 100  # 每个提示词后面生成多少个字，取值 [1, ∞)
# 列表里可以放好几个提示词，每个都单独生成一段
prompts = ["春江", "往事"]  # 生成时用的提示词，命令行里用逗号分隔
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
seed = 42  # 随机种子，让每次运行的结果都一样
# ==========================================================================


# Tokenizer（分词器）：模型只会处理数字，分词器负责“字 ↔ 编号”的互相翻译
class Tokenizer:
    """字符级分词器：每个不同的字对应一个整数编号。"""

    # 用训练文本建立词表：文本里出现过的每个不同的字都分到一个编号
    def __init__(self, text):
        # set 去掉重复的字，sorted 排序：同一篇文本每次得到同样的顺序，也就是同样的编号
        self.chars = sorted(set(text))
        # 词表大小 V：一共有多少个不同的字
        self.vocab_size = len(self.chars)
        # stoi（string to integer）：字 → 编号，例如 {"一": 5, "丁": 6, ...}
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        # itos（integer to string）：编号 → 字，是上面那张表反过来
        self.itos = {i: ch for i, ch in enumerate(self.chars)}

    # 编码：把一串字变成一串编号
    def encode(self, s):
        # 先找出词表里没有的字；它们没有编号，没法编码
        unknown = sorted(set(s) - set(self.stoi))
        # 有这样的字就抛出 ValueError，由调用者决定怎么告诉用户
        if unknown:
            raise ValueError(f"这些字不在词表里：{'、'.join(unknown)}（词表来自训练文本）")
        # 逐字查表，得到编号列表
        return [self.stoi[c] for c in s]

    # 解码：把一串编号变回字符串，是 encode 的逆操作
    def decode(self, ids):
        # 逐个编号查回字，再用 "".join 把这些字接成一个字符串
        return "".join(self.itos[i] for i in ids)


# 从整篇文本（已经编码成编号列表 data）里随机取一批训练样本
def get_batch(data, batch_size, block_size):
    """随机取 batch_size 段长 block_size 的文本；y 是 x 向右错开一位，即每个字的“下一个字”。"""
    # 随机选 batch_size 个起点；最大起点留出 block_size+1 个字，保证 y 的最后一个字也在文本里
    ix = [random.randint(0, len(data) - block_size - 1) for _ in range(batch_size)]
    # x：从每个起点开始的 block_size 个字，是“输入”
    x = [data[i:i + block_size] for i in ix]  # (B, T)
    # y：同样的位置整体往后挪一格。于是 y[b][t] 正好是 x[b][t] 的下一个字，
    # 即“看到 x[b][t] 时应该预测的答案”；一段文本因此同时给出 block_size 道题
    y = [data[i + 1:i + block_size + 1] for i in ix]  # (B, T)
    # 返回输入和答案；(B, T) 表示 B=batch_size 行、每行 T=block_size 个编号
    return x, y


# 模型：一张 V×V 的计数表，行是“当前字”，列是“下一个字”
class BigramLanguageModel:
    """计数版 bigram：transition[a][b] 是字 a 后面紧跟字 b 的次数。"""

    # 建一张全是 0 的表，等着训练时往里计数
    def __init__(self, vocab_size):
        # 记下词表大小，生成时要从 0..V-1 里抽编号
        self.vocab_size = vocab_size
        # V 行、每行 V 个 0；每行都用 [0] * vocab_size 新建一个列表，各行互不影响
        self.transition = [[0] * vocab_size for _ in range(vocab_size)]  # (V, V)

    # 这个模型的“训练”就是计数：不需要梯度，也不需要学习率
    def count(self, idx, targets):
        """训练：把每一对 (当前字, 下一个字) 记一次数。"""
        # 一行一行地走：row_x 是一段输入，row_y 是它对应的答案
        for row_x, row_y in zip(idx, targets):
            # 同一位置上的 a（当前字）和 b（下一个字）正好组成一对
            for a, b in zip(row_x, row_y):
                # 在表里第 a 行、第 b 列加 1
                self.transition[a][b] += 1

    # forward：给每个位置取出它那个字的一整行计数
    def forward(self, idx):
        # 返回每个位置上“下一个字”的计数，它扮演后面神经网络里 logits 的角色
        # idx 是 (B, T) 的编号，每个编号换成长度为 V 的一行计数，所以结果是 (B, T, V)
        return [[self.transition[a] for a in row] for row in idx]  # (B, T, V)

    # 生成：从已有的编号列表 idx 出发，一次添一个字，共添 max_new_tokens 个
    def generate(self, idx, max_new_tokens):
        # 每转一圈生成一个字
        for _ in range(max_new_tokens):
            # bigram 只看最后一个字：把 [最后一个编号] 当成 1 段、长 1 的批次送进 forward，
            # [0] 取第一段，[-1] 取最后一个位置，得到“它后面每个字出现过几次”
            counts = self.forward([idx[-1:]])[0][-1]  # (V,)
            # 从没在训练中出现过的字没有任何计数，这时退回到均匀随机
            # 例如文本最后一个字，或者训练步数太少、从没被抽到的字：它那一行全是 0，
            # 而 random.choices 不接受全为 0 的权重（会报错）；weights=None 表示每个字机会相等
            weights = counts if any(counts) else None
            # 按次数抽一个编号（次数越多越可能被抽中），接到 idx 后面
            idx = idx + random.choices(range(self.vocab_size), weights=weights)
        # 返回“提示词 + 新生成的字”的全部编号
        return idx


# 只有直接运行这个文件时才执行下面的代码；被 import 时什么都不做
if __name__ == "__main__":
    # 用命令行上的 --名字=值 覆盖超参数
    apply_overrides(globals())
    # 固定随机种子，让每次运行抽到同样的批次、生成同样的文本
    random.seed(seed)
    # 读入整篇训练文本（一个字符串）
    text = read_text(data_path)
    # 用训练文本建立分词器（词表）
    tokenizer = Tokenizer(text)
    # 先编码提示词：里面有词表外的字时，在花时间计数之前就报错
    try:
        # 每个提示词编码成一个编号列表
        prompt_ids = [tokenizer.encode(p) for p in prompts]
    # encode 抛出的 ValueError 在这里被接住
    except ValueError as e:
        # 把它变成一句中文错误并退出，而不是打印一大段 traceback
        sys.exit(f"错误：{e}")
    # 把整篇文本编码成编号列表；后面的计数只和编号打交道
    data = tokenizer.encode(text)
    # 文本必须比 block_size 长，否则连一段 x 加它的下一个字都取不出来
    if len(data) <= block_size:
        # 给出具体数字，告诉用户问题在哪里
        sys.exit(f"错误：训练文本只有 {len(data)} 个字，必须比 block_size={block_size} 长。")
    # 报告文本长度和词表大小
    print(f"文本 {len(data):,} 个字，词表 {tokenizer.vocab_size:,} 个字")

    # 建一个全零的计数模型
    model = BigramLanguageModel(tokenizer.vocab_size)
    # 记下开始时刻
    start = time.time()
    # 训练循环：共 max_iters 步
    for step in range(max_iters):
        # 每一步随机取一批 (x, y)
        xb, yb = get_batch(data, batch_size, block_size)
        # 把这一批里的 batch_size × block_size 对字记进表里
        model.count(xb, yb)
    # 报告计数用了多少秒，以及一共数了多少对
    print(f"计数用时 {time.time() - start:.3f} 秒（{max_iters} 步 × {batch_size} × {block_size} 对）")

    # 每个提示词和它的编号一起取出来
    for prompt, ids in zip(prompts, prompt_ids):
        # 先打印一行标题，标明这是哪个提示词
        print(f"--- {prompt} ---")
        # 生成编号，再解码成字打印出来；结果以提示词开头
        print(tokenizer.decode(model.generate(ids, max_new_tokens)))
