//! Bodies that are wrong: malformed JSON and multipart, fields of the wrong type, numbers that are NaN, infinite,
//! huge, negative or fractional, prompts and bodies over the limits.

use reqwest::Method;
use serde_json::json;

use super::{CREATE, Case, form, post_form, post_json, with};
use crate::tally::Rng;

pub(super) fn malformed_json(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "http: malformed JSON";
    let whole = with("seed", "7");
    for path in CREATE.iter().copied().chain(["/v1/videos/video_0/remix"]) {
        for cut in 0..whole.len() {
            out.push(post_json(cat, path, whole[..cut].to_vec()));
        }
    }
    for _ in 0..60 {
        let n = rng.range(1, 2000);
        out.push(post_json(cat, "/v1/videos", rng.bytes(n)));
    }
    let junk: &[&[u8]] = &[
        b"[]",
        b"[1, 2]",
        b"1",
        b"\"prompt\"",
        b"null",
        b"true",
        b"{",
        b"}",
        b"{}}",
        b"{\"prompt\": \"x\",}",
        b"{'prompt': 'x'}",
        b"{prompt: \"x\"}",
        b"{\"prompt\": \"x\"} trailing",
        b"\xef\xbb\xbf{\"prompt\": \"x\"}",
        b"{\"prompt\": \"\xff\xfe\"}",
        b"{\"prompt\": \"x\" // comment\n}",
        b"{\"prompt\": \"\\ud800\"}",
        b"{\"prompt\": \"\\u00\"}",
        b"{\"seconds\": 1e999, \"prompt\": \"x\"}",
        b"{\"prompt\": NaN}",
        b"\x00",
        b"{\"prompt\": \"x\", \"prompt\": 5}",
    ];
    for body in junk {
        out.push(post_json(cat, "/v1/videos", body.to_vec()));
    }
    for depth in [64, 129, 1000, 100_000] {
        let mut b = "[".repeat(depth).into_bytes();
        b.extend_from_slice("]".repeat(depth).as_bytes());
        out.push(post_json(cat, "/v1/videos", b));
        out.push(post_json(
            cat,
            "/v1/videos",
            format!("{{\"prompt\": {}\"x\"{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        ));
    }
}

/// A form part: name, file name (for a file part), data.
type Part<'a> = (&'a str, Option<&'a str>, Vec<u8>);

pub(super) fn malformed_multipart(rng: &mut Rng, mp4: &[u8], out: &mut Vec<Case>) {
    let cat = "http: malformed multipart";
    let b = "hostileBoundary7MA4YWxk";
    let valid: &[(&str, Option<&str>, &[u8])] =
        &[("prompt", None, b"a red circle"), ("seconds", None, b"1"), ("num_inference_steps", None, b"2")];
    let whole = form(b, valid);
    for _ in 0..80 {
        let cut = rng.range(0, whole.len() - 5);
        out.push(post_form(cat, "/v1/videos", b, whole[..cut].to_vec()));
    }
    for ct in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
        "multipart/mixed; boundary=x",
    ] {
        for _ in 0..5 {
            let headers = vec![("content-type", ct.to_string())];
            out.push(Case { cat, method: Method::POST, path: "/v1/videos".into(), headers, body: Some(whole.clone()) });
        }
    }
    for _ in 0..20 {
        out.push(post_form(cat, "/v1/videos", "someOtherBoundary", whole.clone()));
    }
    let bad_parts: Vec<Vec<Part>> = vec![
        vec![("", None, b"x".to_vec())],
        vec![("prompt", None, b"\xff\xfe\xfd".to_vec())],
        vec![("prompt[x]", None, b"a".to_vec())],
        vec![("prompt", None, b"a".to_vec()), ("input_reference[evil]", None, b"x".to_vec())],
        vec![("prompt", None, b"a".to_vec()), ("a[b][c]", None, b"x".to_vec())],
        vec![
            ("prompt", None, b"a".to_vec()),
            ("input_reference", None, b"x".to_vec()),
            ("input_reference[image_url]", None, b"x".to_vec()),
        ],
        vec![
            ("prompt", None, b"a".to_vec()),
            ("input_reference[image_url]", None, b"http://169.254.169.254/latest".to_vec()),
        ],
        vec![
            ("prompt", None, b"a".to_vec()),
            ("input_reference[image_url]", None, b"data:image/png;base64,!!!".to_vec()),
        ],
        vec![("prompt", None, b"a".to_vec()), ("input_reference[image_url]", None, b"data:image/png,raw".to_vec())],
        vec![
            ("prompt", None, b"a".to_vec()),
            ("input_reference[image_url]", None, b"data:image/png;base64,aGVsbG8=".to_vec()),
        ],
        vec![("prompt", None, b"a".to_vec()), ("prompt", None, b"\0".to_vec())],
        vec![("prompt", Some("p.txt"), b"a red circle".to_vec())],
        vec![("prompt", None, b"a".to_vec()), ("seconds", Some("s.txt"), b"1".to_vec())],
    ];
    for parts in &bad_parts {
        let parts: Vec<(&str, Option<&str>, &[u8])> = parts.iter().map(|(n, f, d)| (*n, *f, d.as_slice())).collect();
        for path in CREATE {
            out.push(post_form(cat, path, b, form(b, &parts)));
        }
    }
    // Parts without a Content-Disposition, or with a broken one.
    for head in [
        "Content-Type: text/plain",
        "Content-Disposition: form-data",
        "Content-Disposition: form-data; name=prompt\"",
        "X: y",
    ] {
        let body = format!("--{b}\r\n{head}\r\n\r\na red circle\r\n--{b}--\r\n").into_bytes();
        out.push(post_form(cat, "/v1/videos", b, body));
    }
    // Uploads that are not media, or media cut short.
    for i in 0..60 {
        let data = match i % 4 {
            0 => rng.blob(1, 64 << 10),
            1 => [b"\x89PNG\r\n\x1a\n".as_slice(), &rng.blob(0, 4096)].concat(),
            2 => [b"\xff\xd8\xff\xe0".as_slice(), &rng.blob(0, 4096)].concat(),
            _ => mp4[..rng.range(0, mp4.len() / 2)].to_vec(),
        };
        let (path, field) =
            [("/v1/videos", "input_reference"), ("/v1/videos/edits", "video"), ("/v1/videos/extensions", "video")]
                [i % 3];
        let parts: &[(&str, Option<&str>, &[u8])] =
            &[("prompt", None, b"a red circle"), (field, Some("ref.bin"), &data)];
        out.push(post_form(cat, path, b, form(b, parts)));
    }
    // Thousands of fields nobody asked for.
    for n in [1000, 5000] {
        let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
        let parts: Vec<(&str, Option<&str>, &[u8])> =
            names.iter().map(|s| (s.as_str(), None, b"1".as_slice())).collect();
        out.push(post_form(cat, "/v1/videos", b, form(b, &parts)));
    }
}

/// Values of the wrong JSON type for a string field and for a number field.
const NOT_STRINGS: &[&str] = &["1", "1.5", "true", "false", "[]", "[\"x\"]", "{}", "{\"text\": \"x\"}"];
const NOT_NUMBERS: &[&str] =
    &["true", "[]", "[1]", "{}", "{\"n\": 1}", "\"abc\"", "\"1 2\"", "\"0x10\"", "\"1_000\"", "\"٣\""];

pub(super) fn wrong_types(out: &mut Vec<Case>) {
    let cat = "http: wrong types";
    let strings = ["prompt", "model", "size", "negative_prompt", "scheduler", "idempotency_key"];
    let numbers =
        ["seconds", "num_frames", "fps", "num_inference_steps", "guidance_scale", "seed", "priority", "preview_every"];
    for path in CREATE {
        for f in strings {
            for v in NOT_STRINGS {
                out.push(post_json(cat, path, with(f, v)));
            }
        }
        for f in numbers {
            for v in NOT_NUMBERS {
                out.push(post_json(cat, path, with(f, v)));
            }
        }
        for f in ["quality", "Prompt", "n", "user", "input_reference[image_url]", ""] {
            out.push(post_json(cat, path, with(f, "\"x\"")));
        }
    }
    for v in [
        "1",
        "\"x\"",
        "[]",
        "true",
        "{}",
        "{\"url\": \"x\"}",
        "{\"image_url\": 5}",
        "{\"id\": \"a\", \"file_id\": \"b\"}",
        "{\"id\": 5}",
        "{\"id\": null, \"file_id\": null}",
    ] {
        out.push(post_json(cat, "/v1/videos", with("input_reference", v)));
        out.push(post_json(cat, "/v1/videos/edits", with("video", v)));
        out.push(post_json(cat, "/v1/videos/extensions", with("video", v)));
    }
    for v in NOT_NUMBERS {
        out.push(post_json(cat, "/v1/videos", with("strength", v)));
        out.push(post_json(cat, "/v1/videos/extensions", with("strength", v)));
    }
    for body in [
        "{\"prompt\": 5}",
        "{\"prompt\": [\"x\"]}",
        "{\"prompt\": \"x\", \"seconds\": 1}",
        "{\"prompt\": \"x\", \"model\": \"vidmesh-tiny\"}",
    ] {
        out.push(post_json(cat, "/v1/videos/video_0/remix", body.as_bytes().to_vec()));
    }
}

/// Invalid numbers per field, as raw JSON (numbers, and strings as forms carry them).
fn bad_values(field: &str) -> Vec<&'static str> {
    let nan = ["\"NaN\"", "\"nan\"", "\"inf\"", "\"-inf\"", "\"Infinity\"", "\"-Infinity\"", "\"1e309\"", "\"-1e309\""];
    let mut v: Vec<&str> = match field {
        "seconds" => {
            vec!["-1", "-0.5", "0.3", "3", "3600", "1e308", "-1e308", "5e-324", "1e-300", "2.5", "1.001", "\"-0.1\""]
        }
        "num_frames" => {
            vec!["-1", "1.5", "7", "9", "33", "1e15", "1e16", "4294967295", "4294967296", "1e300", "-1e300", "\"8.5\""]
        }
        "fps" => vec!["-8", "1", "7", "9", "24", "60", "8.5", "1e9", "4294967296", "1e300", "4294967295"],
        "num_inference_steps" => {
            vec!["-1", "-0.5", "1001", "2.5", "1e6", "4294967295", "4294967296", "1e300", "\"-2\""]
        }
        "guidance_scale" => vec!["-1", "-0.000001", "20.5", "21", "1e30", "1e39", "1e300", "-1e300", "\"1e39\""],
        "seed" => vec!["-1", "-0.5", "0.5", "1e16", "1e300", "-1e300", "18446744073709551616", "\"-1\"", "\"1e20\""],
        "preview_every" => vec!["3", "-1", "1e9", "4294967296", "0.5", "\"9\""],
        "size" => vec![
            "\"0x0\"",
            "\"-64x64\"",
            "\"64x-64\"",
            "\"99999999999x64\"",
            "\"4294967295x4294967295\"",
            "\"4294967296x64\"",
            "\"64X64\"",
            "\"64x64x64\"",
            "\"NaNxNaN\"",
            "\"64.0x64\"",
            "\"x\"",
            "\"64x\"",
            "\"x64\"",
            "\"1e3x64\"",
            "\"0x64\"",
            "\"64x0\"",
            "\"65x64\"",
            "\"64x65\"",
            "\"1x1\"",
            "\"65536x65536\"",
            "\"64*64\"",
            "\"64×64\"",
        ],
        _ => vec![],
    };
    if field != "size" {
        v.extend(nan);
    }
    v
}

pub(super) fn bad_numbers(out: &mut Vec<Case>) {
    let cat = "http: NaN/Inf/huge/negative numbers";
    let b = "numbersBoundary";
    for field in [
        "seconds",
        "num_frames",
        "fps",
        "num_inference_steps",
        "guidance_scale",
        "seed",
        "preview_every",
        "size",
        "priority",
    ] {
        let values = if field == "priority" {
            vec!["\"NaN\"", "\"nan\"", "\"inf\"", "\"-inf\"", "\"Infinity\"", "\"1e309\""]
        } else {
            bad_values(field)
        };
        for raw in values {
            for path in ["/v1/videos", "/v1/videos/extensions"] {
                out.push(post_json(cat, path, with(field, raw)));
            }
            let text = raw.trim_matches('"');
            let mut parts: Vec<(&str, Option<&str>, &[u8])> =
                vec![("prompt", None, b"a red circle"), ("num_inference_steps", None, b"2")];
            parts.retain(|(k, _, _)| *k != field);
            parts.push((field, None, text.as_bytes()));
            out.push(post_form(cat, "/v1/videos", b, form(b, &parts)));
        }
    }
}

pub(super) fn oversized(out: &mut Vec<Case>, max_body: usize, max_reference: usize) {
    let cat = "http: oversized prompts and bodies";
    for n in [2001, 2048, 4096, 10_000, 100_000, 1 << 20] {
        let long = json!("x".repeat(n)).to_string();
        out.push(post_json(cat, "/v1/videos", with("prompt", &long)));
        out.push(post_json(cat, "/v1/videos", with("negative_prompt", &long)));
        out.push(post_json(cat, "/v1/videos/video_0/remix", format!("{{\"prompt\": {long}}}").into_bytes()));
    }
    out.push(post_json(cat, "/v1/videos", with("prompt", &json!("é".repeat(1001)).to_string())));
    out.push(post_json(cat, "/v1/videos", with("prompt", &json!("🎬".repeat(501)).to_string())));
    out.push(post_json(cat, "/v1/videos", with("idempotency_key", &json!("k".repeat(201)).to_string())));
    let mut c = post_json(cat, "/v1/videos", with("seed", "1"));
    c.headers.push(("idempotency-key", "k".repeat(4000)));
    out.push(c);
    for n in [max_body + 1, max_body + (1 << 20)] {
        out.push(post_json(cat, "/v1/videos", vec![b' '; n]));
        let b = "bigBoundary";
        let data = vec![0u8; n];
        out.push(post_form(
            cat,
            "/v1/videos",
            b,
            form(b, &[("prompt", None, b"x"), ("input_reference", Some("x.png"), &data)]),
        ));
    }
    let b = "refBoundary";
    let data = vec![7u8; max_reference + 1];
    out.push(post_form(
        cat,
        "/v1/videos",
        b,
        form(b, &[("prompt", None, b"x"), ("input_reference", Some("x.png"), &data)]),
    ));
    out.push(post_form(
        cat,
        "/v1/videos/edits",
        b,
        form(b, &[("prompt", None, b"x"), ("video", Some("x.mp4"), &data)]),
    ));
}
