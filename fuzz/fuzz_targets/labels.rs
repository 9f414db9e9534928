//! The labels file: `Labels::parse` against a model of its rules (one label per line,
//! trimmed, `\r\n` allowed, a final newline optional, an empty file or line an error
//! naming the line).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use streamclassd::labels::{Labels, LabelsError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = body.split('\n').collect();
    let blank = lines.iter().position(|l| l.trim().is_empty());
    match Labels::parse(text, Path::new("labels.txt")) {
        Ok(labels) => {
            assert!(!body.is_empty() && blank.is_none(), "accepted {text:?}");
            assert_eq!(labels.len(), lines.len());
            for (i, line) in lines.iter().enumerate() {
                assert_eq!(labels.get(i), line.trim());
            }
            assert_eq!(labels.get(labels.len()), "");
        }
        Err(LabelsError::Unreadable { .. }) => assert!(body.is_empty()),
        Err(LabelsError::EmptyLine { line, .. }) => {
            assert!(!body.is_empty());
            assert_eq!(Some(line - 1), blank, "{text:?}");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
});
