use crate::config::Config;

/// The rustc codegen flags that make Rust code fit a kernel built with
/// `config`, mirroring what the kernel's own Makefiles give its C (and, where
/// the kernel has Rust, its Rust) code. They must reach `core` too, so the
/// driver passes them to a `-Zbuild-std` build through `CARGO_ENCODED_RUSTFLAGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustFlags {
    pub args: Vec<String>,
}

impl RustFlags {
    pub fn for_config(config: &Config) -> RustFlags {
        let mut args: Vec<String> = [
            "-Ccode-model=kernel",
            "-Crelocation-model=static",
            "-Cno-redzone=yes",
            // Calls to kernel functions must be direct PLT32 relocations:
            // the module loader rejects GOTPCREL.
            "-Zplt=yes",
        ]
        .map(String::from)
        .to_vec();
        if config.is_y("CONFIG_FRAME_POINTER") {
            args.push("-Cforce-frame-pointers=yes".into());
        }
        let retpoline = config.any_y(&["CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"]);
        let ibt = config.is_y("CONFIG_X86_KERNEL_IBT");
        if retpoline {
            args.push("-Zretpoline-external-thunk".into());
            args.push("-Zindirect-branch-cs-prefix".into());
        }
        if retpoline || ibt {
            // A jump table is an indirect jump objtool cannot follow.
            args.push("-Cjump-tables=no".into());
        }
        if config.any_y(&["CONFIG_RETHUNK", "CONFIG_MITIGATION_RETHUNK"]) {
            args.push("-Zfunction-return=thunk-extern".into());
        }
        if ibt {
            args.push("-Zcf-protection=branch".into());
        }
        if config.is_y("CONFIG_CALL_PADDING") {
            let bytes = config.get("CONFIG_FUNCTION_PADDING_BYTES").unwrap_or("16");
            args.push(format!("-Zpatchable-function-entry={bytes},{bytes}"));
        }
        RustFlags { args }
    }

    /// The flags joined for `CARGO_ENCODED_RUSTFLAGS`.
    pub fn encoded(&self) -> String {
        self.args.join("\x1f")
    }

    /// The flags of `self` missing from an encoded flag list (what a build
    /// script sees in `CARGO_ENCODED_RUSTFLAGS`).
    pub fn missing_from(&self, encoded: &str) -> Vec<&str> {
        let present: Vec<&str> = encoded.split('\x1f').collect();
        self.args
            .iter()
            .map(String::as_str)
            .filter(|flag| !present.contains(flag))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(config: &str) -> Vec<String> {
        RustFlags::for_config(&Config::parse(config).unwrap()).args
    }

    #[test]
    fn base_flags_always_present() {
        let args = flags("");
        assert!(args.contains(&"-Ccode-model=kernel".to_owned()));
        assert!(args.contains(&"-Crelocation-model=static".to_owned()));
        assert!(!args
            .iter()
            .any(|a| a.contains("retpoline") || a.contains("cf-protection")));
    }

    #[test]
    fn mitigations_follow_both_option_names() {
        for prefix in ["CONFIG_", "CONFIG_MITIGATION_"] {
            let args = flags(&format!("{prefix}RETPOLINE=y\n{prefix}RETHUNK=y\n"));
            assert!(
                args.contains(&"-Zretpoline-external-thunk".to_owned()),
                "{prefix}"
            );
            assert!(
                args.contains(&"-Zfunction-return=thunk-extern".to_owned()),
                "{prefix}"
            );
        }
    }

    #[test]
    fn ibt_and_padding() {
        let args = flags(
            "CONFIG_X86_KERNEL_IBT=y\nCONFIG_CALL_PADDING=y\nCONFIG_FUNCTION_PADDING_BYTES=16\n",
        );
        assert!(args.contains(&"-Zcf-protection=branch".to_owned()));
        assert!(args.contains(&"-Zpatchable-function-entry=16,16".to_owned()));
        assert!(args.contains(&"-Cjump-tables=no".to_owned()));
    }

    #[test]
    fn missing_from_names_absent_flags() {
        let wanted = RustFlags::for_config(&Config::parse("CONFIG_X86_KERNEL_IBT=y\n").unwrap());
        let missing = wanted.missing_from("-Ccode-model=kernel\x1f-Crelocation-model=static");
        assert!(missing.contains(&"-Zcf-protection=branch"));
        assert!(!missing.contains(&"-Ccode-model=kernel"));
        assert!(wanted.missing_from(&wanted.encoded()).is_empty());
    }
}
