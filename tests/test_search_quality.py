"""The search-quality benchmark's table lines (hand-written expected text)."""

from benchmarks.search_quality import comparison_lines


def test_comparison_lines():
    lines = comparison_lines({"nsga2": [0.9, 0.8, 1.0], "de": [0.5, 0.7, 0.6]}, 190)
    assert lines[0].startswith("| method (190 evaluations)")
    assert lines[2] == "| nsga2 | 3 | 0.900 | 0.800 – 1.000 |"
    assert lines[3] == "| de | 3 | 0.600 | 0.500 – 0.700 |"
