//! A minimal `protoc` replacement for build scripts (etcd-client's): supports `-I`/`--proto_path`,
//! `-o`/`--descriptor_set_out`, `--include_imports`, `--include_source_info` and `--version`, and
//! writes a `FileDescriptorSet` compiled by `protox`. Anything else is refused loudly.
use prost::Message;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut includes: Vec<String> = Vec::new();
    let mut out: Option<String> = None;
    let mut files: Vec<String> = Vec::new();
    let mut include_imports = false;
    let mut include_source_info = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut take = |flag: &str, a: &str| -> Option<String> {
            if a == flag {
                args.next()
            } else {
                a.strip_prefix(&format!("{flag}=")).map(str::to_string)
            }
        };
        if a == "--version" {
            println!("libprotoc 3.21.12");
            return ExitCode::SUCCESS;
        } else if a == "--include_imports" {
            include_imports = true;
        } else if a == "--include_source_info" {
            include_source_info = true;
        } else if let Some(v) = a.strip_prefix("-I").filter(|v| !v.is_empty()) {
            includes.push(v.to_string());
        } else if a == "-I" {
            includes.extend(args.next());
        } else if let Some(v) = take("--proto_path", &a) {
            includes.push(v);
        } else if let Some(v) = a.strip_prefix("-o").filter(|v| !v.is_empty()) {
            out = Some(v.to_string());
        } else if a == "-o" {
            out = args.next();
        } else if let Some(v) = take("--descriptor_set_out", &a) {
            out = Some(v);
        } else if a.starts_with('-') {
            eprintln!("protoc-shim: unsupported option {a}");
            return ExitCode::from(2);
        } else {
            files.push(a);
        }
    }
    let Some(out) = out else {
        eprintln!("protoc-shim: only --descriptor_set_out is supported");
        return ExitCode::from(2);
    };
    if includes.is_empty() {
        includes.push(".".into());
    }
    let mut compiler = match protox::Compiler::new(&includes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("protoc-shim: {e}");
            return ExitCode::from(1);
        }
    };
    compiler.include_imports(include_imports);
    compiler.include_source_info(include_source_info);
    if let Err(e) = compiler.open_files(&files) {
        eprintln!("protoc-shim: {e:?}");
        return ExitCode::from(1);
    }
    let set = compiler.file_descriptor_set();
    if let Err(e) = std::fs::write(&out, set.encode_to_vec()) {
        eprintln!("protoc-shim: writing {out}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
