//! Documents -> packed fixed-length id sequences. Plain text files and folders become one
//! stream split by an end-of-text separator; prompt/response rows (JSONL or generated tasks)
//! become one row each with a loss mask so the prompt is never corrupted (SFT). Tokenization is
//! cached on disk; the train/validation split is deterministic in the seed.

mod cache;
mod documents;
mod packing;

pub use cache::{TokenizedDocument, cache_directory, tokenize_cached};
pub use documents::{
    Document, data_files, data_files_excluding, load_documents, load_documents_excluding,
    parse_jsonl,
};
pub use packing::{PackedDataset, Sequence, pack};
