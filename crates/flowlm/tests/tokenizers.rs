mod common;

use flowlm::tokenizer::{SimpleTokenizer, SimpleUnit, Tokenizer, train_byte_level_bpe};

const TEXT: &str =
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer";

fn round_trip(tokenizer: &Tokenizer, text: &str) {
    let ids = tokenizer.encode(text).unwrap();
    assert!(!ids.is_empty());
    assert_eq!(tokenizer.decode(&ids).unwrap(), text, "{:?}", tokenizer);
    let s = tokenizer.special();
    assert!(!ids.contains(&s.mask));
    assert!((s.mask as usize) < tokenizer.vocab_size());
}

#[test]
fn char_tokenizer_round_trips_and_saves() {
    let tokenizer = Tokenizer::Simple(SimpleTokenizer::build(SimpleUnit::Char, &[TEXT], 1));
    round_trip(&tokenizer, TEXT);
    let dir = common::scratch("char-tokenizer");
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let loaded = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(
        loaded.encode(TEXT).unwrap(),
        tokenizer.encode(TEXT).unwrap()
    );
    assert_eq!(loaded.special(), tokenizer.special());
    // Unknown characters map to <unk>.
    assert_eq!(
        tokenizer.encode("Z").unwrap(),
        vec![tokenizer.special().unk.unwrap()]
    );
}

#[test]
fn word_tokenizer_round_trips_words() {
    let text = "the quick brown fox jumps over the lazy dog";
    let tokenizer = Tokenizer::Simple(SimpleTokenizer::build(SimpleUnit::Word, &[text], 1));
    round_trip(&tokenizer, text);
    assert_eq!(tokenizer.encode(text).unwrap().len(), 9);
    assert_eq!(tokenizer.special_ids(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn trained_bpe_round_trips_and_adds_a_mask() {
    let dir = common::scratch("bpe");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, TEXT.repeat(20)).unwrap();
    let tokenizer = train_byte_level_bpe(&[corpus], 320).unwrap();
    round_trip(&tokenizer, TEXT);
    round_trip(&tokenizer, "unseen words survive: ünïcödé ✓");
    assert!(tokenizer.vocab_size() <= 320);
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let loaded = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(loaded.special(), tokenizer.special());
    assert_eq!(
        loaded.encode(TEXT).unwrap(),
        tokenizer.encode(TEXT).unwrap()
    );
}

#[test]
fn gpt2_from_vocab_and_merges_round_trips() {
    let Some(shared) = common::shared() else {
        eprintln!("../shared is absent: GPT-2 files unavailable");
        return;
    };
    let tokenizer = Tokenizer::from_dir(&shared.join("tokenizers/gpt2")).unwrap();
    round_trip(&tokenizer, TEXT);
    // GPT-2 has 50257 tokens; FlowLM adds a mask.
    assert_eq!(tokenizer.vocab_size(), 50258);
    assert_eq!(tokenizer.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(tokenizer.special().eos, 50256);
}

#[test]
fn bert_tokenizer_json_keeps_its_own_mask() {
    let shared = common::shared().expect("../shared (with models/bert-tiny-mlm) is needed");
    let tokenizer =
        Tokenizer::from_file(&shared.join("models/bert-tiny-mlm/tokenizer.json")).unwrap();
    assert_eq!(tokenizer.special().mask, 103);
    assert_eq!(tokenizer.vocab_size(), 30522);
    // The file asks for truncation at 512 tokens; documents are encoded whole.
    let long = "the quick brown fox jumps over the lazy dog . ".repeat(100);
    assert_eq!(tokenizer.encode(&long).unwrap().len(), 1000);
}

#[test]
fn a_bad_tokenizer_file_is_a_clear_error() {
    let dir = common::scratch("bad-tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    let error = Tokenizer::from_file(&dir.join("tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokenizer.json"), "{error}");
    assert!(Tokenizer::from_file(&dir.join("missing.json")).is_err());
}
