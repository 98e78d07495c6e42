"""cipai.py 的测试：在一小段手写的语料上检查体式的提取、次数、主体式和平局的取法；
合格率在照抄语料的词上是 1.0、把一个句段加长一个字就是 0.0；受约束解码要用的 form_slots 填满之后正好合体式；
命令行上不认识的词牌只给一行中文错误；导入 cipai 不读数据、不打印。"""
import pytest

import cipai
from cipai import Poem, Segment
from conftest import assert_clean_error, load_script, run_ok, run_script


def poem(name, author, *lines):
    return f"{name} {author}\n" + "\n".join(lines) + "\n"


# 小令的两种体式：乙先出现、各 3 首，平局时乙是主体式；另有一首把第一句写长了一个字
JIA = ("春花秋月何，往事知多少时节。", "小楼昨夜风。")  # 5，7。/5。
YI = ("春花秋月何，往事知多少。", "小楼昨夜又东风。")  # 5，5。/7。
HAND_TEXT = "\n".join([
    poem("小令", "张三", *YI),
    poem("小令", "李四", *JIA),
    poem("小令", "张三", *JIA),
    poem("小令", "王五", *JIA),
    poem("小令", "李四", *YI),
    poem("小令", "赵六", *YI),
    poem("小令", "钱七", "春花秋月何人，往事知多少时节。", "小楼昨夜风。"),  # 6，7。/5。：只有 1 首
    poem("孤调", "张三", "一二三，四五六。"),  # 只有 2 首：没有有据可查的体式
    poem("孤调", "李四", "一二三，四五六。"),
])


@pytest.fixture
def table():
    return cipai.load(HAND_TEXT)


def test_parse_poems_splits_header_and_body():
    poems = cipai.parse_poems(HAND_TEXT)
    assert len(poems) == 9
    assert poems[0] == Poem("小令", "张三", list(YI))


def test_form_counts_characters_marks_and_line_breaks():
    assert cipai.poem_form(list(JIA)) == (Segment(5, "，"), Segment(7, "。\n"), Segment(5, "。\n"))
    assert cipai.poem_form("\n".join(JIA) + "\n") == cipai.poem_form(list(JIA))  # 文本和行列表一样
    assert cipai.format_form(cipai.poem_form(list(YI))) == "5，5。/7。"
    # 书名号不算字也不断句，□（缺字）算一个字，行尾没有标点时句段只以换行结束
    assert cipai.poem_form(["《春》江花、□月夜？", "残句"]) == (Segment(3, "、"), Segment(3, "？\n"), Segment(2, "\n"))


def test_counts_main_form_and_deterministic_tie_break(table):
    entry = table["小令"]
    jia, yi = cipai.poem_form(list(JIA)), cipai.poem_form(list(YI))
    assert len(entry.poems) == 7 and len(entry.form_counts) == 3
    assert entry.form_counts[jia] == 3 and entry.form_counts[yi] == 3
    assert entry.main_form == yi  # 3 比 3 平局：乙在语料里先出现
    assert entry.attested(3) == [yi, jia]
    assert entry.attested(4) == []
    assert entry.authors[:2] == ["张三", "李四"]  # 都是 2 首，张三先出现
    # 把第一首挪到最后，甲就先出现，主体式换成甲：平局只看先后，不看别的
    blocks = HAND_TEXT.strip("\n").split("\n\n")
    assert cipai.load("\n\n".join(blocks[1:] + blocks[:1]))["小令"].main_form == jia


def test_get_form_and_its_errors(table):
    assert cipai.get_form(table, "小令") == table["小令"].main_form
    assert cipai.format_form(cipai.get_form(table, "小令", 1)) == "5，7。/5。"
    with pytest.raises(cipai.CipaiError, match="最接近的有：小令"):
        cipai.get_form(table, "小令儿")
    with pytest.raises(cipai.CipaiError, match="没有出现至少 3 次"):
        cipai.get_form(table, "孤调")
    with pytest.raises(cipai.CipaiError, match="0 到 1"):
        cipai.get_form(table, "小令", 2)
    assert cipai.get_form(table, "孤调", min_count=2) == cipai.poem_form(["一二三，四五六。"])
    assert cipai.closest_names("孤调子", table) == ["孤调"]


def test_metric_is_one_on_copied_poems_and_zero_after_lengthening_a_segment(table):
    copied = [Poem("小令", "某", list(YI))] * 4
    assert cipai.match_rate(table, copied) == cipai.Rate(4, 1.0, 1.0, 0.0, 0)
    longer = [Poem("小令", "某", ["春花秋月何处，往事知多少。", YI[1]])]  # 第一句多一个字
    assert cipai.match_rate(table, longer) == cipai.Rate(1, 0.0, 0.0, 0.0, 0)
    # 合有据可查的体式，但不是主体式；多一句则句段数差 1
    assert cipai.match(table, "小令", list(JIA)) == cipai.Match(True, False, 0)
    assert cipai.match(table, "小令", [*YI, "又一句。"]) == cipai.Match(False, False, 1)
    # 不认识的词牌和没有有据可查体式的词牌不参加评估
    assert cipai.match(table, "孤调", ["一二三，四五六。"]) is None
    assert cipai.match_rate(table, [Poem("孤调", "某", ["一二三，四五六。"]), Poem("无此调", "某", ["一。"])]).skipped == 2


def test_lengths_only_merges_forms_that_differ_only_in_marks():
    text = "\n".join([poem("调", "某", "一二三，四五六。")] * 2 + [poem("调", "某", "一二三。", "四五六。")])
    table = cipai.load(text)
    assert cipai.match(table, "调", ["一二三。", "四五六。"]) is None  # 带标点比：最多的体式只有 2 首
    assert cipai.match(table, "调", ["一二三。", "四五六。"], marks=False) == cipai.Match(True, True, 0)


def test_filling_the_slots_gives_a_poem_of_exactly_that_form(table):
    for form in table["小令"].attested():
        slots = cipai.form_slots(form)
        body = "".join("字" if slot is None else slot for slot in slots)
        assert body == cipai.form_template(form, "字")
        assert cipai.poem_form(body) == form
        assert cipai.match(table, "小令", body).attested
        assert cipai.check_prefix(form, body[:7])
    form = table["小令"].main_form  # 5，5。/7。
    with pytest.raises(cipai.CipaiError, match="应该是“，”"):
        cipai.check_prefix(form, "春花秋月何人")
    with pytest.raises(cipai.CipaiError, match="普通的字"):
        cipai.check_prefix(form, "春花。")
    with pytest.raises(cipai.CipaiError, match="还长"):
        cipai.check_prefix(form, "字" * 100)


def test_import_reads_no_data_and_prints_nothing(monkeypatch, capsys):
    import common

    def refuse(*args, **kwargs):
        raise AssertionError("导入时不该读数据")

    monkeypatch.setattr(common, "read_text", refuse)
    module = load_script("cipai.py")
    assert module.cipai == "" and callable(module.match)
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def hand_corpus(tmp_path):
    path = tmp_path / "hand.txt"
    path.write_text(HAND_TEXT, encoding="utf-8")
    return path


def test_cli_lists_cipai_and_shows_one(hand_corpus):
    overview = run_ok("cipai.py", f"--data_path={hand_corpus}").stdout
    assert "9 首词，2 个词牌" in overview and "5，5。/7。" in overview
    detail = run_ok("cipai.py", "小令", f"--data_path={hand_corpus}").stdout
    assert "[编号 0] 3 首  5，5。/7。" in detail and "[编号 1] 3 首  5，7。/5。" in detail
    assert "例：钱七，第 1 行：春花秋月何人，往事知多少时节。" in detail
    flag = run_ok("cipai.py", "--cipai=小令", f"--data_path={hand_corpus}").stdout
    assert detail.split("\n", 1)[1] == flag.split("\n", 1)[1]  # 位置参数和 --cipai= 一样（第一行是“覆盖的超参数”）


@pytest.mark.parametrize("args, expected", [
    (["小令儿"], "小令"),
    (["小令", "孤调"], "只能给一个词牌名"),
    (["--top=0"], "[1, ∞)"),
])
def test_cli_bad_input_is_one_chinese_line(hand_corpus, args, expected):
    result = run_script("cipai.py", *args, f"--data_path={hand_corpus}")
    assert_clean_error(result, 2)
    assert expected in result.stderr


def test_full_corpus_forms_and_rates(full_text):
    table = cipai.load(full_text)
    poems = [p for entry in table.values() for p in entry.poems]
    assert len(poems) == 21095
    assert cipai.format_form(table["浣溪沙"].main_form) == "7。/7。/7。/7，7。/7。"
    strict, lengths = cipai.match_rate(table, poems), cipai.match_rate(table, poems, marks=False)
    assert round(strict.attested, 3) == 0.841 and round(lengths.attested, 3) == 0.888
    main_poems = [p for entry in cipai.top_cipai(table, 10, exclude={cipai.LOST_NAME})
                  for p in entry.poems if cipai.poem_form(p.lines) == entry.main_form][::20]
    assert cipai.match_rate(table, main_poems)[1:] == (1.0, 1.0, 0.0, 0)
    longer = [p._replace(lines=[p.lines[0][0] + p.lines[0], *p.lines[1:]]) for p in main_poems]
    assert cipai.match_rate(table, longer).attested == 0.0


def test_lost_name_has_no_form_and_body_chars_leave_out_the_header():
    text = HAND_TEXT + "\n" + "\n".join([poem(cipai.LOST_NAME, "佚名", "残句一□。")] * 3)
    table = cipai.load(text)
    assert table[cipai.LOST_NAME].attested()  # 残句也能凑够 3 次……
    with pytest.raises(cipai.CipaiError, match="不是一个词牌"):  # ……但它不是词牌，没有体式可言
        cipai.get_form(table, cipai.LOST_NAME)
    chars = cipai.body_chars(table)
    assert "春" in chars and "残" in chars and cipai.MISSING not in chars  # □ 算一个字的位置，但不许写出来
    assert not ({" ", "\n", "佚", "张"} | set(cipai.MARKS)) & chars  # 空格和只在标题行里出现的作者名都不算
