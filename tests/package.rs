//! Installation: `make install DESTDIR=...` puts every file where the units expect it
//! (and nothing else), keeps an existing configuration, rewrites the units for another
//! PREFIX; `scripts/package-deb` wraps the same tree in a .deb whose contents, control
//! fields, conffiles and maintainer scripts are checked with dpkg-deb. Needs make and
//! dpkg-dev (dpkg-shlibdeps), which scripts/setup installs, and the .venv's ONNX Runtime.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_streamclassd");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} not found: install the Debian packages make and dpkg-dev (scripts/setup does)")
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ONNX Runtime library the Makefile bundles, found the way it finds it.
fn ort_library() -> PathBuf {
    let out = ok(Command::new("bash").current_dir(repo()).args([
        "-c",
        ". scripts/env >/dev/null 2>&1; printf %s \"$ORT_DYLIB_PATH\"",
    ]));
    let p = PathBuf::from(out);
    assert!(
        p.is_file(),
        "ONNX Runtime library {} missing: run scripts/setup",
        p.display()
    );
    p
}

fn make_install(destdir: &Path, prefix: &str) -> String {
    assert!(Path::new(BIN).is_file(), "{BIN} missing");
    ok(Command::new("make")
        .current_dir(repo())
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("PREFIX={prefix}"))
        .arg(format!("BINARY={BIN}")))
}

/// Every regular file under `root`, as paths relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, acc: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, acc);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                acc.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut acc = BTreeSet::new();
    walk(root, root, &mut acc);
    acc
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read") == std::fs::read(b).expect("read")
}

/// What `make install PREFIX=/usr` installs, with modes and sources.
fn expected(ort: &Path) -> Vec<(&'static str, u32, PathBuf)> {
    let r = repo();
    let ort_dir = ort
        .parent()
        .and_then(Path::parent)
        .expect("onnxruntime/capi/");
    vec![
        ("usr/bin/streamclassd", 0o755, PathBuf::from(BIN)),
        (
            "usr/lib/streamclassd/libonnxruntime.so",
            0o644,
            ort.to_path_buf(),
        ),
        (
            "usr/lib/systemd/system/streamclassd.service",
            0o644,
            r.join("systemd/streamclassd.service"),
        ),
        (
            "usr/lib/systemd/system/streamclassd@.service",
            0o644,
            r.join("systemd/streamclassd@.service"),
        ),
        (
            "usr/lib/sysusers.d/streamclassd.conf",
            0o644,
            r.join("systemd/streamclassd.sysusers"),
        ),
        (
            "usr/lib/tmpfiles.d/streamclassd.conf",
            0o644,
            r.join("systemd/streamclassd.tmpfiles"),
        ),
        (
            "etc/streamclassd/streamclassd.toml",
            0o644,
            r.join("config/streamclassd.toml"),
        ),
        (
            "usr/share/doc/streamclassd/README.md",
            0o644,
            r.join("README.md"),
        ),
        (
            "usr/share/doc/streamclassd/example.toml",
            0o644,
            r.join("config/example.toml"),
        ),
        (
            "usr/share/doc/streamclassd/onnxruntime-LICENSE",
            0o644,
            ort_dir.join("LICENSE"),
        ),
        (
            "usr/share/doc/streamclassd/onnxruntime-ThirdPartyNotices.txt",
            0o644,
            ort_dir.join("ThirdPartyNotices.txt"),
        ),
    ]
}

#[test]
fn make_install_puts_every_file_in_place() {
    let ort = ort_library();
    let dest = tempfile::tempdir().expect("tempdir");
    make_install(dest.path(), "/usr");

    let want = expected(&ort);
    let names: BTreeSet<String> = want.iter().map(|(p, _, _)| (*p).to_owned()).collect();
    assert_eq!(
        files_under(dest.path()),
        names,
        "make install wrote other files than expected"
    );
    for (rel, m, src) in &want {
        let path = dest.path().join(rel);
        println!("{rel} ({:o})", mode(&path));
        assert_eq!(mode(&path), *m, "mode of {rel}");
        assert!(
            same_bytes(&path, src),
            "{rel} differs from {}",
            src.display()
        );
    }
    assert_eq!(mode(&dest.path().join("etc/streamclassd")), 0o755);

    // The installed binary runs and accepts the installed default configuration.
    let bin = dest.path().join("usr/bin/streamclassd");
    let config = dest.path().join("etc/streamclassd/streamclassd.toml");
    let out = run(Command::new(bin).arg("check-config").arg(&config));
    assert!(
        out.status.success(),
        "the default configuration must pass check-config:\n{}",
        text(&out)
    );

    // A second install keeps the administrator's configuration.
    std::fs::write(&config, "# edited\n").expect("edit config");
    make_install(dest.path(), "/usr");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "# edited\n"
    );
}

#[test]
fn make_install_rewrites_the_units_for_another_prefix() {
    let dest = tempfile::tempdir().expect("tempdir");
    make_install(dest.path(), "/usr/local");
    for unit in ["streamclassd.service", "streamclassd@.service"] {
        let path = dest.path().join("usr/local/lib/systemd/system").join(unit);
        let body = std::fs::read_to_string(path).expect("unit");
        assert!(
            body.contains(
                "\nExecStart=/usr/local/bin/streamclassd run --config /etc/streamclassd/"
            ),
            "{unit}:\n{body}"
        );
        assert!(
            body.contains(
                "\nEnvironment=ORT_DYLIB_PATH=/usr/local/lib/streamclassd/libonnxruntime.so\n"
            ),
            "{unit}"
        );
        assert!(
            body.contains("file:///usr/local/share/doc/streamclassd/README.md"),
            "{unit}"
        );
        assert!(!body.contains("/usr/bin/"), "{unit} still names /usr/bin");
    }
    for f in [
        "usr/local/bin/streamclassd",
        "usr/local/lib/streamclassd/libonnxruntime.so",
        "usr/local/lib/sysusers.d/streamclassd.conf",
        "usr/local/lib/tmpfiles.d/streamclassd.conf",
        // /etc is never under PREFIX: the units read /etc/streamclassd.
        "etc/streamclassd/streamclassd.toml",
    ] {
        assert!(dest.path().join(f).is_file(), "{f} missing");
    }
}

fn dpkg_field(deb: &Path, field: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))
        .trim()
        .to_owned()
}

#[test]
fn package_deb_builds_a_complete_package() {
    let ort = ort_library();
    let out = tempfile::tempdir().expect("tempdir");
    let stdout = ok(Command::new(repo().join("scripts/package-deb"))
        .arg(out.path())
        .env("BINARY", BIN));
    let deb = PathBuf::from(stdout.lines().last().expect("the script prints the .deb"));
    assert!(deb.is_file(), "{} missing", deb.display());
    println!(
        "{} ({} bytes)",
        deb.display(),
        std::fs::metadata(&deb).expect("deb").len()
    );

    // Control fields.
    let arch = ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_owned();
    assert_eq!(dpkg_field(&deb, "Package"), "streamclassd");
    assert_eq!(
        dpkg_field(&deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(dpkg_field(&deb, "Architecture"), arch);
    assert!(!dpkg_field(&deb, "Maintainer").is_empty());
    assert!(dpkg_field(&deb, "Description").contains("MQTT"));
    let depends = dpkg_field(&deb, "Depends");
    println!("Depends: {depends}");
    for lib in ["libc6", "libstdc++6", "libopencv-core", "libopencv-videoio"] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }

    // Contents: every installed file, owned by root.
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let want = expected(&ort);
    for (rel, m, _) in &want {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{rel}")))
            .unwrap_or_else(|| panic!("{rel} not in the package:\n{listing}"));
        let perms = if *m == 0o755 {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert!(
            line.starts_with(&format!("{perms} root/root")),
            "{rel}: {line}"
        );
    }
    assert!(listing.contains(" ./usr/share/doc/streamclassd/copyright"));

    // Control archive: conffiles and maintainer scripts.
    let control = tempfile::tempdir().expect("tempdir");
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path().join("DEBIAN")));
    let c = control.path().join("DEBIAN");
    assert_eq!(
        std::fs::read_to_string(c.join("conffiles")).expect("conffiles"),
        "/etc/streamclassd/streamclassd.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = c.join(script);
        assert_eq!(mode(&path), 0o755, "{script} must be executable");
        let out = run(Command::new("sh").arg("-n").arg(path));
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
    let postinst = std::fs::read_to_string(c.join("postinst")).expect("postinst");
    for needle in [
        "systemd-sysusers /usr/lib/sysusers.d/streamclassd.conf",
        "systemd-tmpfiles --create /usr/lib/tmpfiles.d/streamclassd.conf",
        "dpkg-statoverride --update --add root streamclassd 0750 /etc/streamclassd",
        "systemctl daemon-reload",
    ] {
        assert!(postinst.contains(needle), "postinst lacks {needle:?}");
    }
    let md5sums = std::fs::read_to_string(c.join("md5sums")).expect("md5sums");
    assert!(md5sums.contains("  usr/bin/streamclassd\n"));

    // The packaged binary is the one cargo built.
    let data = tempfile::tempdir().expect("tempdir");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(data.path()));
    assert!(same_bytes(
        &data.path().join("usr/bin/streamclassd"),
        Path::new(BIN)
    ));
    assert!(same_bytes(
        &data.path().join("usr/lib/streamclassd/libonnxruntime.so"),
        &ort
    ));
}
