from moesd.corpus import EOS, build_corpus, encode_corpus, select_files, stdlib_root, train_tokenizer


def test_selection_leaves_out_tests_and_vendored_code():
    files = [str(p.relative_to(stdlib_root())) for p in select_files(stdlib_root())]
    assert files == sorted(files) and len(files) > 100
    assert not any("/test/" in f"/{f}" or "site-packages" in f or f.split("/")[-1].startswith("test_") for f in files)


def test_corpus_is_deterministic_and_recorded():
    a, b = build_corpus(200_000), build_corpus(200_000)
    assert a.sha256 == b.sha256 and a.files == b.files
    assert len(a.text) >= 200_000 and a.manifest()["n_files"] == len(a.files)


def test_tokenizer_round_trips_code():
    corpus = build_corpus(300_000)
    tokenizer = train_tokenizer(corpus.text, 512)
    assert tokenizer.get_vocab_size() == 512 and tokenizer.token_to_id(EOS) == 0
    code = "def add(a, b):\n    return a + b\n"
    assert tokenizer.decode(tokenizer.encode(code).ids) == code
    ids = encode_corpus(tokenizer, corpus)
    assert ids.count(0) == len(corpus.files)
