"""笔记齐全：每个脚本的文档字符串指向一篇存在的笔记，README 的路线图列出每个教程脚本，所有本地链接都不落空。"""
import re

import pytest

from conftest import REPO

SCRIPTS = sorted(p.name for p in REPO.glob("*.py"))
TUTORIAL = [s for s in SCRIPTS if s.startswith(("simple", "pytorch_", "babygpt_"))]
README = (REPO / "README.md").read_text(encoding="utf-8")
MARKDOWN = [REPO / "README.md", *sorted((REPO / "notes").glob("*.md"))]


def docstring_notes(script):
    docstring = (REPO / script).read_text(encoding="utf-8").split('"""')[1]
    return re.findall(r"notes/[\w.-]+\.md", docstring)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_names_an_existing_note(script):
    notes = docstring_notes(script)
    assert notes, f"{script} 的文档字符串里没有“笔记：notes/…md”"
    for note in notes:
        assert (REPO / note).exists(), f"{script} 指向的 {note} 不存在"


@pytest.mark.parametrize("script", TUTORIAL)
def test_readme_roadmap_lists_every_script_with_its_note(script):
    rows = [line for line in README.splitlines() if line.startswith("|") and f"`{script}`" in line]
    assert rows, f"README 的路线图里没有 {script}"
    assert any(note in row for row in rows for note in docstring_notes(script)), f"README 里 {script} 那一行没有链接它的笔记"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.name)
def test_local_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} 里的链接 {target} 不存在"


# 笔记写给学习者，不写它是怎样写出来的；没量过的数写“未实测”和能量它的命令
PROCESS_WORDING = ["本次", "这次会话", "没有数字", "我用", "我们用", "这里不下结论", "原项目", "没有在这里跑"]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.name)
def test_notes_speak_to_the_learner_not_about_how_they_were_written(page):
    text = page.read_text(encoding="utf-8")
    found = [word for word in PROCESS_WORDING if word in text]
    assert not found, f"{page.name} 里有讲写作过程的字眼：{'、'.join(found)}"
