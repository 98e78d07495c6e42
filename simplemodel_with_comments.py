"""
simplemodel_with_comments.py —— simplemodel.py 的逐行注释版：代码与 simplemodel.py 一字不差，
只是几乎每一行上面都多了一段中文注释，写给第一次读 Python 程序的人。
先读这个文件，看懂之后再去读不带注释的 simplemodel.py，会发现它其实只有几十行。
笔记：notes/simplemodel.md
"""
# import 把 Python 自带的模块拿进来用：random 负责“随机抽签”
import random
# sys 里有 sys.exit，用来带着一句错误说明结束程序
import sys
# time 里有 time.time()，返回“现在是第几秒”，两次相减就是中间花了多少秒
import time

# 从本仓库的 common.py 拿来两个小工具：
# apply_overrides 让你在命令行上用 --名字=值 改下面的超参数，read_text 负责读训练文本
from common import apply_overrides, read_text

# 下面两条 “# ===” 之间是超参数：程序运行前就定好、可以从命令行修改的设置
# ==================== 超参数（可用 --name=value 覆盖） ====================
prompt = "春江"  # 生成时用的提示词
max_new_tokens = 100  # 提示词后面生成多少个字，取值 [1, ∞)
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
seed = 42  # 随机种子，让每次运行的结果都一样
# ==========================================================================


# 只有直接运行 python simplemodel_with_comments.py 时，下面的代码才会执行；
# 被别的程序 import 时不会执行，所以“导入”永远不会去读数据或计数
if __name__ == "__main__":
    # 读命令行参数，例如 --prompt=往事，把上面对应的超参数换成新值
    apply_overrides(globals())
    # 固定随机种子：同样的种子会抽出同样的一串“随机”结果，方便对照
    random.seed(seed)
    # 把整篇训练文本读成一个很长的字符串（str）；在 Python 里字符串就是一个个字排成的序列
    text = read_text(data_path)
    # set(text) 去掉重复，只留下出现过的不同的字；sorted 把它们排好序，得到“词表”
    vocab = sorted(set(text))
    # 两个集合相减，得到“在提示词里、却不在词表里”的字
    unknown = sorted(set(prompt) - set(vocab))
    # 只要有一个这样的字，模型就不知道它后面该接什么
    if unknown:
        # 在开始计数之前就报错，并把这些字用顿号连起来告诉用户；
        # sys.exit 带一句话时会把这句话打印到屏幕（标准错误）并以退出码 1 结束程序
        sys.exit(f"错误：这些字不在词表里：{'、'.join(unknown)}（词表来自训练文本）")
    # f"..." 是格式化字符串：花括号里的表达式会被换成它的值，:, 表示每三位加一个逗号
    print(f"文本 {len(text):,} 个字，词表 {len(vocab):,} 个字")

    # transition[a][b] 是字 a 后面紧跟字 b 的次数
    # 记下开始计数的时刻，稍后用来算计数花了多久
    start = time.time()
    # 转移表是一个字典（dict）：键是一个字 a，值是另一个字典 {后面的字 b: 次数}
    # 例如 transition["春"] 可能是 {"风": 1200, "江": 35, ...}，这就是“字典套字典”
    transition = {}
    # text[1:] 是去掉第一个字的文本；zip 把两者并排走，于是每一步拿到一对相邻的字 (a, b)
    for a, b in zip(text, text[1:]):
        # setdefault：字 a 第一次出现时，先放进一个空字典；之后直接取出已有的那个字典
        followers = transition.setdefault(a, {})
        # get(b, 0)：b 以前没跟在 a 后面出现过就当作 0 次，然后加 1
        followers[b] = followers.get(b, 0) + 1
    # 现在减去开始时刻，就是计数用的秒数；:.3f 表示保留三位小数
    print(f"计数用时 {time.time() - start:.3f} 秒（{len(text) - 1:,} 对）")

    # 生成的文本从提示词开始
    out = prompt
    # 重复 max_new_tokens 次，每次在末尾添一个字；_ 表示我们用不到循环的计数
    for _ in range(max_new_tokens):
        # out[-1] 是目前最后一个字；get 在字典里查它后面跟过哪些字，查不到时得到 None
        followers = transition.get(out[-1])
        # 空字典和 None 都算“假”，所以这里问的是：这个字后面有没有跟过任何字
        if followers:
            # 跟得越多的字越容易被抽中：次数就是抽签的权重
            # list(followers) 是候选的字，list(followers.values()) 是它们各自的次数；
            # random.choices 按权重抽签：次数是 30 的字被抽中的机会是次数为 10 的字的 3 倍，
            # 这样写出来的字对和原文里的字对一样常见。它返回一个列表，[0] 取出抽到的那个字
            out += random.choices(list(followers), weights=list(followers.values()))[0]
        # 否则（这个字后面从来没跟过字）
        else:
            # 这个字只在文本末尾出现过，后面没有字可学，只好在整个词表里均匀地随便挑
            out += random.choice(vocab)
    # 先打印一行标题，标明这是哪个提示词生成的
    print(f"--- {prompt} ---")
    # 再打印生成的文本：它以提示词开头，后面是新写的 max_new_tokens 个字
    print(out)
