"""Hyperpartisan XML archives: parsing, Longformer cleaning, labels, filters, splits and their overlaps.

The XML files are tiny hand-written ones laid out like the Zenodo/hub originals (one <articles> root,
body text outside and inside <p>/<a>/<q>, entities, single-quoted ground-truth attributes).
"""
import io
import json
import zipfile

import pyarrow as pa
import pytest

from raygrid.data import hyperpartisan_hub as hp
from raygrid.data import hyperpartisan_splits as hps
from raygrid.data.sources import DataError

ARTICLES = """<?xml version="1.0" encoding="UTF-8"?><articles>
\t<article id="0000007" published-at="2018-01-01" title="Tom &amp; Jerry&#8217;s &quot;news&quot;">
Photo by Jane Doe/Reuters <p>First <a href="https://example.com/a" type="external">linked words</a> here.</p> \
<p>It was sooooo good!!! Really?!</p>
<p>See http://example.com/page and www.example.org for more.</p> <p><q>Quoted &amp; nested</q> text.</p></article>
\t<article id="0000009" published-at="2018-01-02" title="Short"><p>Short one.</p> <a type="internal">Details</a></article>
\t<article id="0000012" title="Long"><p>{long}</p></article>
</articles>
"""
LONG_BODY = "Congress met again today. " * 20  # 520 characters before cleaning, 519 after the strip
GROUND_TRUTH = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<articles>
<article id='0000007' hyperpartisan='true' labeled-by='article' url='https://example.com/7'/>\t
<article id='0000009' hyperpartisan='false' labeled-by='article' url='https://example.com/9'/>\t
<article id='0000012' hyperpartisan='true' labeled-by='article' url='https://example.com/12'/>\t
</articles>
"""
EXPECTED_FIRST = ("Photo by Jane First linked words here. It was so good! Really! See and for more. "
                  "Quoted & nested text.")


def write_pair(folder, part="training", subset="byarticle", date="20181122", articles=None, truth=None, zipped=False):
    """Write articles-/ground-truth-<part>-<subset>-<date>.xml (or .zip holding the XML) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, content in (("articles", articles or ARTICLES.format(long=LONG_BODY)), ("ground-truth", truth or GROUND_TRUTH)):
        name = f"{kind}-{part}-{subset}-{date}"
        if zipped:
            path = folder / f"{name}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(f"{name}.xml", content)
        else:
            path = folder / f"{name}.xml"
            path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.mark.parametrize("raw, cleaned", [
    ("x and/or y", "x y"),                         # letters/letters -> space
    ("Photo Justin Sullivan/Getty Images", "Photo Justin Images"),
    ("approximately 600,000 babies", "approximately 600,0 babies"),   # trailing run of 3+ equal chars
    ("sooooo good", "so good"),
    ("Wow!!! Really?! Hm...", "Wow! Really! Hm."),  # punctuation run -> its last character
    ("see http://a.b/c and www.x.org or hrefx now", "see and or now"),
    ("wwwhttp:x", "w"),   # URL patterns apply one after the other ("www" survives, then the run rule)
    ("line\none\t\ttwo\xa0 three", "line one two three"),
    ("a&#160;b", "ab"),
    ("   padded   ", "padded"),
])
def test_clean_text(raw, cleaned):
    assert hp.clean_text(raw) == cleaned


def test_parse_articles_text_labels_and_attributes(tmp_path):
    articles, truth = write_pair(tmp_path)
    table = hp.parse_articles(articles, truth)
    assert table.schema.names[:4] == ["text", "label", "id", "title"]
    assert table.schema.field("label").type == pa.int64()
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["0000007", "0000009", "0000012"]  # file order, ids kept as strings
    assert [r["label"] for r in rows] == [1, 0, 1]
    assert rows[0]["text"] == EXPECTED_FIRST
    assert rows[0]["title"] == 'Tom & Jerry\u2019s "news"'  # entities decoded; the title is not in the text
    assert rows[1]["text"] == "Short one. Details"           # text of internal links is kept
    assert rows[2]["text"] == LONG_BODY.strip()
    assert [r["url"] for r in rows] == ["https://example.com/7", "https://example.com/9", "https://example.com/12"]


def test_text_equals_tostring_method_text(tmp_path):
    from xml.etree import ElementTree as ET

    articles, _ = write_pair(tmp_path)
    for element in ET.parse(articles).getroot():
        original = ET.tostring(element, method="text", encoding="utf-8").decode("utf-8")
        assert hp.clean_text(hp.article_text(element)) == hp.clean_text(original)


def test_zip_and_file_objects_parse_the_same(tmp_path):
    plain = hp.parse_articles(*write_pair(tmp_path / "xml"))
    zipped = hp.parse_articles(*write_pair(tmp_path / "zip", zipped=True))
    objects = hp.parse_articles(io.BytesIO(ARTICLES.format(long=LONG_BODY).encode()), io.BytesIO(GROUND_TRUTH.encode()))
    assert plain.equals(zipped) and plain.equals(objects)


def test_min_chars_keeps_long_articles_only(tmp_path):
    articles, truth = write_pair(tmp_path)
    assert hp.parse_articles(articles, truth, min_chars=len(EXPECTED_FIRST))["id"].to_pylist() == ["0000007", "0000012"]
    assert hp.parse_articles(articles, truth, min_chars=519)["id"].to_pylist() == ["0000012"]
    assert hp.parse_articles(articles, truth, min_chars=520).num_rows == 0


def test_many_articles_stream_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(hp, "_BATCH_ROWS", 7)
    body = "".join(f'<article id="{i:07d}" title="t{i}"><p>article number {i}</p></article>\n' for i in range(50))
    truth = "".join(f"<article id='{i:07d}' hyperpartisan='{'true' if i % 3 == 0 else 'false'}'/>\n" for i in range(50))
    articles, labels = write_pair(tmp_path, articles=f"<articles>\n{body}</articles>",
                                  truth=f"<articles>\n{truth}</articles>", zipped=True)
    table = hp.parse_articles(articles, labels)
    assert table.num_rows == 50
    assert table["text"][49].as_py() == "article number 49"
    assert sum(table["label"].to_pylist()) == 17


def test_bad_ground_truth_is_reported(tmp_path):
    articles, _ = write_pair(tmp_path)
    partial = GROUND_TRUTH.replace("<article id='0000012' hyperpartisan='true' labeled-by='article' url='https://example.com/12'/>", "")
    (tmp_path / "partial.xml").write_text(partial)
    with pytest.raises(DataError, match="'0000012' has no entry"):
        hp.parse_articles(articles, tmp_path / "partial.xml")
    (tmp_path / "odd.xml").write_text(GROUND_TRUTH.replace("hyperpartisan='false'", "hyperpartisan='maybe'"))
    with pytest.raises(DataError, match="hyperpartisan='maybe'"):
        hp.parse_articles(articles, tmp_path / "odd.xml")
    (tmp_path / "broken.xml").write_text("<articles><article id='1'>")
    with pytest.raises(DataError, match="invalid XML"):
        hp.parse_articles(articles, tmp_path / "broken.xml")


def test_load_byarticle_from_folder_of_zips_and_xml(tmp_path):
    write_pair(tmp_path / "data", zipped=True)                     # hub layout: data/*.zip
    test_truth = GROUND_TRUTH.replace("'true'", "'false'")
    write_pair(tmp_path / "extracted", part="test", date="20181207", truth=test_truth)
    tables = hp.load_byarticle_from_xml(tmp_path / "data", tmp_path / "extracted")
    assert set(tables) == {"train", "semeval_test"}
    assert tables["train"]["label"].to_pylist() == [1, 0, 1]
    assert tables["semeval_test"]["label"].to_pylist() == [0, 0, 0]
    with pytest.raises(DataError, match="no articles-training-byarticle"):
        hp.load_byarticle_from_xml(tmp_path / "extracted")


def test_find_archives_prefers_xml_and_needs_both_files(tmp_path):
    write_pair(tmp_path, zipped=True)
    xml_articles, _ = write_pair(tmp_path)
    found = hp.find_archives(tmp_path)
    assert found[("byarticle", "training")]["articles"] == xml_articles
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "articles-validation-bypublisher-20181122.xml").write_text(ARTICLES)
    with pytest.raises(DataError, match="no ground-truth file"):
        hp.find_archives(lonely)


def test_bypublisher_default_filter_is_7000_chars(tmp_path):
    long_text = "Word " * 1500  # 7,500 characters
    articles = f'<articles><article id="0000001" title="a"><p>{long_text}</p></article>' \
               f'<article id="0000002" title="b"><p>too short</p></article></articles>'
    truth = "<articles><article id='0000001' hyperpartisan='true' bias='right'/>" \
            "<article id='0000002' hyperpartisan='false' bias='least'/></articles>"
    write_pair(tmp_path, subset="bypublisher", articles=articles, truth=truth, zipped=True)
    write_pair(tmp_path, part="validation", subset="bypublisher", articles=articles, truth=truth)
    tables = hp.load_bypublisher_from_xml(tmp_path)
    assert {s: t["id"].to_pylist() for s, t in tables.items()} == {"train": ["0000001"], "validation": ["0000001"]}
    assert hp.load_bypublisher_from_xml(tmp_path, min_chars=0)["train"].num_rows == 2


def test_fetch_hub_asks_for_the_hosted_zips(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["repo_type"], kwargs["revision"]))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    paths = hp.fetch_hub("byarticle", revision=hp.HUB_DATA_COMMIT)
    assert calls == [(hp.REPO_ID, "data/articles-training-byarticle-20181122.zip", "dataset", hp.HUB_DATA_COMMIT),
                     (hp.REPO_ID, "data/ground-truth-training-byarticle-20181122.zip", "dataset", hp.HUB_DATA_COMMIT)]
    assert [p.name for p in paths] == ["articles-training-byarticle-20181122.zip",
                                       "ground-truth-training-byarticle-20181122.zip"]
    calls.clear()
    hp.fetch_hub("bypublisher")
    assert [c[1] for c in calls] == ["data/articles-training-bypublisher-20181122.zip",
                                     "data/ground-truth-training-bypublisher-20181122.zip",
                                     "data/articles-validation-bypublisher-20181122.zip",
                                     "data/ground-truth-validation-bypublisher-20181122.zip"]
    with pytest.raises(DataError, match="unknown subset"):
        hp.fetch_hub("byauthor")


def corpus(n=20):
    return pa.table({"text": [f"doc {i}" for i in range(n)], "label": pa.array([i % 2 for i in range(n)], pa.int64()),
                     "id": [f"{i:07d}" for i in range(n)]})


def test_longformer_split_keeps_order_and_reports_overlaps(tmp_path):
    split_file = tmp_path / "hp-splits.json"
    split_file.write_text(json.dumps({"train": [5, 1, 2, 3, 4], "dev": [6, 7], "test": [2, 7, 8, 9]}))
    splits = hps.longformer_split(corpus(), split_file)
    assert list(splits) == ["train", "validation", "test"]
    assert splits["train"]["id"].to_pylist() == ["0000005", "0000001", "0000002", "0000003", "0000004"]
    assert splits["test"]["text"].to_pylist() == ["doc 2", "doc 7", "doc 8", "doc 9"]
    assert hps.split_overlaps(splits) == {"test&train": [2], "test&validation": [7], "train&validation": []}
    raw_names = json.loads(split_file.read_text())
    assert hps.split_overlaps(raw_names) == {"dev&test": [7], "dev&train": [], "test&train": [2]}
    assert hps.ids_in_no_split(corpus(), splits) == [0] + list(range(10, 20))
    with pytest.raises(DataError, match="ids not in the table"):
        hps.longformer_split(corpus(5), split_file)


def test_leak_free_split_is_stratified_disjoint_and_seeded():
    table = pa.concat_tables([corpus(40), corpus(40).slice(0, 10)])  # 10 duplicated ids
    splits = hps.leak_free_split(table, seed=3)
    sizes = {name: t.num_rows for name, t in splits.items()}
    assert sizes == {"train": 32, "validation": 4, "test": 4}
    assert all(not ids for ids in hps.split_overlaps(splits).values())
    assert sorted(i for t in splits.values() for i in t["id"].to_pylist()) == [f"{i:07d}" for i in range(40)]
    for t in splits.values():
        assert t["label"].to_pylist().count(1) * 2 == t.num_rows  # balanced like the input
    again = hps.leak_free_split(table, seed=3)
    assert all(again[s].equals(splits[s]) for s in splits)
    assert not hps.leak_free_split(table, seed=4)["test"].equals(splits["test"])


def test_load_hub_parses_the_fetched_files_with_each_subset_default(tmp_path, monkeypatch):
    """load_hub on stand-in downloads: by-article keeps every article, by-publisher the 7,000-char ones."""
    long_text = "Word " * 1500
    articles = f'<articles><article id="0000001" title="a"><p>{long_text}</p></article>' \
               f'<article id="0000002" title="b"><p>too short</p></article></articles>'
    truth = "<articles><article id='0000001' hyperpartisan='true'/><article id='0000002' hyperpartisan='false'/></articles>"
    hub = {"byarticle": write_pair(tmp_path / "hub", articles=articles, truth=truth, zipped=True),
           "bypublisher": write_pair(tmp_path / "hub", subset="bypublisher", articles=articles, truth=truth, zipped=True)}
    monkeypatch.setattr(hp, "fetch_hub", lambda subset, **kwargs: hub[subset])
    assert hp.load_hub("byarticle")["train"]["id"].to_pylist() == ["0000001", "0000002"]
    assert hp.load_hub("bypublisher")["train"]["id"].to_pylist() == ["0000001"]
    assert hp.load_hub("bypublisher", min_chars=0)["train"].num_rows == 2
    assert hp.load_hub("byarticle", min_chars=100)["train"]["id"].to_pylist() == ["0000001"]
    test_files = write_pair(tmp_path / "local", part="test", date="20181207", articles=articles, truth=truth)
    assert set(hp.load_hub("byarticle", test_paths=test_files)) == {"train", "semeval_test"}
