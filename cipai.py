"""
cipai.py —— 从 ci.txt 里学出每个词牌的“体式”（句子有几句、每句几个字、句末是什么标点、在哪里换行），
不用手抄任何词谱；再用它判断一首词（语料里的或模型写的）合不合它词牌的格式。
用法：python cipai.py                 # 列出最常见的词牌、各自的主体式，以及语料自身的合格率
      python cipai.py 浣溪沙          # 一个词牌的各种体式、出现次数和语料里的例句（也可写 --cipai=浣溪沙）
别的脚本可以 import cipai：parse_poems、learn_forms、get_form、form_slots、body_chars、match、match_rate。
笔记：notes/cipai.md
"""
import difflib
import sys
import unicodedata
from collections import Counter, namedtuple

from common import apply_overrides, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
cipai = ""  # 留空：列出最常见的词牌；填一个词牌名：显示它的各种体式
top = 20  # 列出多少个词牌（或一个词牌的多少种体式），取值 [1, ∞)
min_count = 3  # 一种体式在同一词牌下至少出现几次才算“有据可查”，取值 [1, ∞)
data_path = "ci.txt"  # 语料文本（UTF-8），格式是“词牌 作者”一行、正文每句一行、词与词之间空一行
# ==========================================================================

MARKS = "，、。？！"  # 断句的标点：每个都结束一个“句段”
NEWLINE = "\n"  # 正文里的换行也是格式的一部分：它接在一行最后一个句段的句末标点后面
POEM_END = "\n"  # 一首词写完之后再来一个换行（也就是空一行），下一首开始
MISSING = "□"  # 缺字符号：原文这里有一个字，但已经认不出来了；算一个字的位置
LOST_NAME = "失调名"  # 词调名已经失传的作品，多是残句，各首长短不一：它不是一个词牌，评估时应当跳过
Segment = namedtuple("Segment", "length end")  # length：几个字；end：结束它的标点，如 "，"、"。\n"，或只有 "\n"
Poem = namedtuple("Poem", "cipai author lines")  # lines：正文各行（不含换行符）
Match = namedtuple("Match", "attested main segment_diff")  # 合某个有据可查的体式？合主体式？句段数和主体式差几个？
Rate = namedtuple("Rate", "n attested main segment_diff skipped")  # n 首参加评估的词上的三个平均值；skipped：没法评估的首数


class CipaiError(ValueError):
    """词牌名不认识、没有有据可查的体式、体式编号越界：消息是一句中文，可以直接给用户看。"""


def is_ignored(ch):
    """不算字也不断句的字符：空白，以及 MARKS 以外的标点（《》（）…“”* 之类，语料里是书名号和校勘记号）。"""
    return ch.isspace() or (unicodedata.category(ch).startswith("P") and ch not in MARKS)


def is_plain(ch):
    """普通的字：算字数的那些字符，也就是既不是 MARKS、不是换行，也不被忽略（□ 表示缺字，也算一个字）。"""
    return ch not in MARKS and ch != NEWLINE and not is_ignored(ch)


def parse_poems(text):
    """把 ci.txt 格式的文本切成一首首 Poem。标题行按第一个空格分成词牌和作者；没有正文的段落不要。"""
    poems = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if len(lines) < 2:
            continue
        name, _, author = lines[0].strip().partition(" ")
        poems.append(Poem(name, author.strip(), lines[1:]))
    return poems


def line_form(line):
    """一行正文的句段：数到 MARKS 里的标点就结束一段；行末的句段在句末标点后面再记一个换行。
    行尾没有标点时，最后一段只以换行结束。被忽略的字符不计数；一行只有被忽略的字符时没有句段。"""
    segments, length = [], 0
    for ch in line:
        if ch in MARKS:
            segments.append(Segment(length, ch))
            length = 0
        elif not is_ignored(ch):
            length += 1
    if length:
        segments.append(Segment(length, ""))
    if segments:
        segments[-1] = Segment(segments[-1].length, segments[-1].end + NEWLINE)
    return tuple(segments)


def poem_form(body):
    """一首词的体式：各行句段依次接起来。body 是正文各行的列表，或者用换行连起来的一段正文（空行跳过）。"""
    lines = body.split("\n") if isinstance(body, str) else body
    return tuple(segment for line in lines for segment in line_form(line))


def split_lines(form):
    """把体式按换行切回各行：[(Segment, ...), ...]。"""
    lines, current = [], []
    for segment in form:
        current.append(segment)
        if segment.end.endswith(NEWLINE):
            lines.append(tuple(current))
            current = []
    if current:
        lines.append(tuple(current))
    return lines


def form_key(form, marks=True):
    """比较体式时用的键：marks=True 比字数、标点和换行（本项目的定义）；False 只比各句段的字数。"""
    return tuple(form) if marks else tuple(segment.length for segment in form)


def format_form(form):
    """紧凑写法：字数后面跟句末标点，换行写成 /，例如浣溪沙的主体式 “7。/7。/7。/7，7。/7。”。"""
    return "".join(f"{s.length}{s.end.replace(NEWLINE, '/')}" for s in form).rstrip("/")


def form_template(form, char="○"):
    """把体式写成一段样子：每个字写成 char，标点和换行照原样，例如 “○○○○○○○，○○○○○○○。\\n……”。"""
    return "".join(char * s.length + s.end for s in form)


def form_slots(form):
    """给受约束的解码器用：正文逐个位置该出现什么。None 表示一个普通的字（见 is_plain）；
    否则是这里必须出现的那个字符（"，"、"。"、"\\n" ……）。走完之后再出一个 POEM_END，这首词就结束了。"""
    slots = []
    for segment in form:
        slots += [None] * segment.length + list(segment.end)
    return slots


def body_chars(table):
    """正文里出现过的普通的字（见 is_plain），缺字符号 □ 除外。受约束的解码在该写字的位置只许写它们：
    标点、换行不行，只在标题行里出现的字符（词牌名和作者之间的空格、作者名里的生僻字）也不行；
    □ 在量格式时占一个字的位置，但它不是一个字，不该写出来。"""
    chars = {ch for entry in table.values() for poem in entry.poems for line in poem.lines for ch in line if is_plain(ch)}
    return chars - {MISSING}


def describe(ch):
    """给人看的字符：换行和空白写成名字。"""
    return {NEWLINE: "换行", " ": "空格", "\u3000": "全角空格"}.get(ch, ch)


def check_prefix(form, text):
    """text 能不能作为按 form 写的正文的开头（例如用户给的提示词）；不能时抛 CipaiError，说明第几个字不对。"""
    slots = form_slots(form)
    if len(text) > len(slots):
        raise CipaiError(f"“{text}”有 {len(text)} 个字符，比整首词（{len(slots)} 个字符）还长")
    for i, (ch, slot) in enumerate(zip(text, slots)):
        if slot is None and not is_plain(ch):
            raise CipaiError(f"“{text}”的第 {i + 1} 个字符“{describe(ch)}”不合体式：这里应该是一个普通的字（体式 {format_form(form)}）")
        if slot is not None and ch != slot:
            raise CipaiError(f"“{text}”的第 {i + 1} 个字符不合体式：这里应该是“{describe(slot)}”（体式 {format_form(form)}）")
    return True


class Cipai:
    """一个词牌：写过它的词有几首、谁写的、出现过哪些体式各几次。"""

    def __init__(self, name):
        self.name = name
        self.poems = []  # 这个词牌的全部 Poem，按在语料里的先后
        self.form_counts = Counter()  # 体式 -> 首数；Counter 保留第一次见到的先后
        self.author_counts = Counter()
        self.examples = {}  # 体式 -> 第一首这样写的 Poem
        self._keys = {}  # key_counts 的缓存，add 时清空

    def add(self, poem):
        form = poem_form(poem.lines)
        self.poems.append(poem)
        self.form_counts[form] += 1
        self.author_counts[poem.author] += 1
        self.examples.setdefault(form, poem)
        self._keys.clear()

    def forms(self):
        """全部体式和首数：次数多的在前，一样多时先在语料里出现的在前。"""
        return ranked(self.form_counts)

    @property
    def main_form(self):
        """主体式：出现次数最多的体式（一样多时取语料里先出现的）。"""
        return self.forms()[0][0]

    def attested(self, min_count=3):
        """有据可查的体式：至少出现 min_count 次，主体式在第 0 个。没有时是空列表。"""
        return [form for form, count in self.forms() if count >= min_count]

    @property
    def authors(self):
        """写过这个词牌的作者：写得多的在前，一样多时先出现的在前。"""
        return [author for author, _ in ranked(self.author_counts)]

    def key_counts(self, marks=True):
        """按 form_key 合并后的次数：只比字数时，字数相同、标点不同的体式算作同一种。"""
        if marks not in self._keys:
            counts = Counter()
            for form, count in self.form_counts.items():
                counts[form_key(form, marks)] += count
            self._keys[marks] = counts
        return self._keys[marks]


def ranked(counter):
    """按次数从多到少排；Python 的排序是稳定的，次数一样时保持插入（也就是在语料里第一次出现）的先后。"""
    return sorted(counter.items(), key=lambda item: -item[1])


def learn_forms(poems):
    """{词牌名: Cipai}，按词牌在语料里第一次出现的先后。"""
    table = {}
    for poem in poems:
        table.setdefault(poem.cipai, Cipai(poem.cipai)).add(poem)
    return table


def load(text):
    """一步到位：从 ci.txt 格式的文本得到 {词牌名: Cipai}。"""
    return learn_forms(parse_poems(text))


def top_cipai(table, n, exclude=()):
    """首数最多的 n 个词牌（一样多时先出现的在前）；exclude 里的名字不要，例如 {LOST_NAME}。"""
    entries = [c for c in table.values() if c.name not in exclude]
    return sorted(entries, key=lambda c: -len(c.poems))[:n]


def closest_names(name, table, n=5):
    """和 name 最像的几个已知词牌名（difflib），给“不认识的词牌”报错用。"""
    return difflib.get_close_matches(name, list(table), n=n, cutoff=0.3)


def lookup(table, name):
    """按名字取 Cipai；不认识时抛 CipaiError，消息里带上最接近的名字。"""
    if name in table:
        return table[name]
    close = closest_names(name, table)
    hint = f"最接近的有：{'、'.join(close)}" if close else "用 python cipai.py 看看有哪些词牌"
    raise CipaiError(f"语料里没有词牌“{name}”。{hint}")


def get_form(table, name, k=0, min_count=3):
    """词牌 name 的第 k 种有据可查的体式（0 是主体式）；出错时抛 CipaiError。"""
    if name == LOST_NAME:
        raise CipaiError(f"“{LOST_NAME}”不是一个词牌：曲调名已经失传，收在它名下的多是残句，各首长短不一")
    entry = lookup(table, name)
    forms = entry.attested(min_count)
    if not forms:
        raise CipaiError(f"词牌“{name}”没有出现至少 {min_count} 次的体式（{len(entry.poems)} 首词，{len(entry.form_counts)} 种写法），没法确定它的格式")
    if not 0 <= k < len(forms):
        raise CipaiError(f"词牌“{name}”只有 {len(forms)} 种有据可查的体式，体式编号要在 0 到 {len(forms) - 1} 之间，收到的是 {k}")
    return forms[k]


def match(table, name, body, min_count=3, marks=True):
    """正文 body（行的列表或一段文本）合不合词牌 name 的格式，返回 Match；
    词牌不认识或它没有有据可查的体式时返回 None（这样的词没法评估）。"""
    entry = table.get(name)
    if entry is None:
        return None
    counts = entry.key_counts(marks)
    ranking = ranked(counts)
    if ranking[0][1] < min_count:
        return None
    key = form_key(poem_form(body), marks)
    main = ranking[0][0]
    return Match(counts.get(key, 0) >= min_count, key == main, abs(len(key) - len(main)))


def match_rate(table, poems, min_count=3, marks=True):
    """一批 Poem 的合格率：合有据可查体式的比例、合主体式的比例、句段数与主体式之差的平均值。"""
    results = [match(table, p.cipai, p.lines, min_count, marks) for p in poems]
    scored = [r for r in results if r is not None]
    n = len(scored)
    if not n:
        return Rate(0, 0.0, 0.0, 0.0, len(results))
    return Rate(n, sum(r.attested for r in scored) / n, sum(r.main for r in scored) / n,
                sum(r.segment_diff for r in scored) / n, len(results) - n)


def ignored_counts(poems):
    """正文里被忽略的字符（MARKS 以外的标点和空白）各出现几次。"""
    return Counter(ch for p in poems for line in p.lines for ch in line if is_ignored(ch))


def first_difference(form, main):
    """form 第一处和主体式不同的行号（从 0 数起）；完全一样时是 0。"""
    lines, main_lines = split_lines(form), split_lines(main)
    for i, line in enumerate(lines):
        if i >= len(main_lines) or line != main_lines[i]:
            return i
    return 0


def show_overview(table, poems):
    attested = [c for c in table.values() if c.attested(min_count)]
    covered = sum(len(c.poems) for c in attested)
    print(f"{len(poems):,} 首词，{len(table):,} 个词牌；其中 {len(attested):,} 个词牌有出现至少 {min_count} 次的体式，"
          f"共 {covered:,} 首")
    ignored = ignored_counts(poems)
    if ignored:
        shown = "、".join(f"{describe(ch)} {n}" for ch, n in ignored.most_common())
        print(f"正文里不算字也不断句的字符共 {sum(ignored.values()):,} 个：{shown}")
    for marks, label in ((True, "字数 + 标点 + 换行"), (False, "只比字数")):
        rate = match_rate(table, poems, min_count, marks)
        if not rate.n:
            print(f"语料自身的合格率（{label}）：没有可以评估的词（没有哪个词牌的某种体式出现了至少 {min_count} 次）")
            continue
        print(f"语料自身的合格率（{label}）：合有据可查的体式 {rate.attested:.3f}，合主体式 {rate.main:.3f}，"
              f"句段数与主体式平均差 {rate.segment_diff:.2f}（{rate.n:,} 首参加评估）")
    entries = top_cipai(table, top, exclude={LOST_NAME})
    print(f"\n首数最多的 {len(entries)} 个词牌（主体式里数字是字数，/ 是换行）：")
    for entry in entries:
        forms = entry.attested(min_count)
        main_count = entry.form_counts[entry.main_form]
        print(f"{entry.name}\t{len(entry.poems)} 首\t主体式 {main_count} 首\t有据可查的体式 {len(forms)} 种\t"
              f"{format_form(entry.main_form)}")
    if LOST_NAME in table:
        print(f"（没有列出“{LOST_NAME}”的 {len(table[LOST_NAME].poems)} 首：调名已经失传，多是残句，它不是一个词牌。）")
    chosen = [p for entry in entries for p in entry.poems]
    strict, lengths = (match_rate(table, chosen, min_count, marks) for marks in (True, False))
    if strict.n and lengths.n:
        print(f"只看这 {len(entries)} 个词牌（{len(chosen):,} 首），语料自身合有据可查体式的比例："
              f"字数 + 标点 + 换行 {strict.attested:.3f}，只比字数 {lengths.attested:.3f}")


def show_cipai(table, name):
    entry = lookup(table, name)
    forms = entry.forms()
    authors = entry.authors
    print(f"{entry.name}：{len(entry.poems)} 首，{len(authors)} 位作者（最多的：{'、'.join(authors[:5])}），"
          f"{len(forms)} 种写法")
    attested = entry.attested(min_count)
    if attested:
        share = sum(entry.form_counts[f] for f in attested) / len(entry.poems)
        print(f"出现至少 {min_count} 次的体式 {len(attested)} 种，覆盖 {share:.1%} 的词；主体式（编号 0）：")
        print(form_template(entry.main_form), end="")
    else:
        print(f"没有出现至少 {min_count} 次的体式，没法确定它的格式。")
    print(f"\n出现最多的 {min(top, len(forms))} 种写法（编号只给有据可查的体式；例句是这种写法和主体式第一处不同的那一行）：")
    for rank, (form, count) in enumerate(forms[:top]):
        poem = entry.examples[form]
        line = first_difference(form, entry.main_form)
        label = f"编号 {rank}" if count >= min_count else "不足 " + str(min_count) + " 次"
        print(f"[{label}] {count} 首  {format_form(form)}")
        print(f"    例：{poem.author}，第 {line + 1} 行：{poem.lines[line] if line < len(poem.lines) else ''}")


def split_positional(argv):
    """允许 python cipai.py 浣溪沙：不以 - 开头的那一个参数就是词牌名。"""
    names = [arg for arg in argv if not arg.startswith("-")]
    if len(names) > 1:
        print(f"错误：只能给一个词牌名，收到了 {len(names)} 个：{'、'.join(names)}", file=sys.stderr)
        sys.exit(2)
    return names, [arg for arg in argv if arg.startswith("-")]


if __name__ == "__main__":
    names, flags = split_positional(sys.argv[1:])
    apply_overrides(globals(), flags)
    if names:
        cipai = names[0]
    poems = parse_poems(read_text(data_path))
    if not poems:
        print(f"错误：{data_path} 里没有“词牌 作者”一行加正文的词。", file=sys.stderr)
        sys.exit(2)
    table = learn_forms(poems)
    try:
        if cipai.strip():
            show_cipai(table, cipai.strip())
        else:
            show_overview(table, poems)
    except CipaiError as e:
        print(f"错误：{e}", file=sys.stderr)
        sys.exit(2)
