use crate::config::Config;

/// The rustc codegen flags that make Rust code fit a kernel built with
/// `config`, mirroring what the kernel's own Makefiles give its C (and, where
/// the kernel has Rust, its Rust) code. They must reach `core` too, so the
/// driver passes them to a `-Zbuild-std` build through `CARGO_ENCODED_RUSTFLAGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustFlags {
    /// The Rust target (`--target`), from the config's architecture.
    pub target: &'static str,
    pub args: Vec<String>,
}

impl RustFlags {
    pub fn for_config(config: &Config) -> RustFlags {
        if config.is_y("CONFIG_ARM64") {
            return RustFlags::arm64(config);
        }
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
        RustFlags {
            target: "x86_64-unknown-none",
            args,
        }
    }

    /// What `arch/arm64/Makefile` gives the kernel's own Rust (6.12): the
    /// softfloat target (no FP/SIMD registers), the branch protection the
    /// config asks for, x18 reserved for the shadow call stack, no unwind
    /// tables unless configured. The code model is the default (small), as
    /// for the C; modules reach the kernel through the loader's PLTs.
    fn arm64(config: &Config) -> RustFlags {
        let mut args = vec!["-Crelocation-model=static".to_owned()];
        if config.is_y("CONFIG_FRAME_POINTER") {
            args.push("-Cforce-frame-pointers=yes".into());
        }
        if config.is_y("CONFIG_ARM64_BTI_KERNEL") {
            args.push("-Zbranch-protection=bti,pac-ret".into());
        } else if config.is_y("CONFIG_ARM64_PTR_AUTH_KERNEL") {
            args.push("-Zbranch-protection=pac-ret".into());
        }
        if config.is_y("CONFIG_SHADOW_CALL_STACK") {
            args.push("-Zfixed-x18".into());
        }
        if !config.is_y("CONFIG_UNWIND_TABLES") {
            args.push("-Cforce-unwind-tables=n".into());
        }
        RustFlags {
            target: "aarch64-unknown-none-softfloat",
            args,
        }
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
    fn arm64_branch_protection_follows_the_config() {
        let pac = RustFlags::for_config(
            &Config::parse("CONFIG_ARM64=y\nCONFIG_ARM64_PTR_AUTH_KERNEL=y\n").unwrap(),
        );
        assert_eq!(pac.target, "aarch64-unknown-none-softfloat");
        assert!(pac.args.contains(&"-Zbranch-protection=pac-ret".to_owned()));
        assert!(!pac.args.iter().any(|a| a.contains("code-model=kernel")));
        let bti = flags("CONFIG_ARM64=y\nCONFIG_ARM64_PTR_AUTH_KERNEL=y\nCONFIG_ARM64_BTI_KERNEL=y\nCONFIG_SHADOW_CALL_STACK=y\n");
        assert!(bti.contains(&"-Zbranch-protection=bti,pac-ret".to_owned()));
        assert!(bti.contains(&"-Zfixed-x18".to_owned()));
        assert_eq!(flags("CONFIG_X86=y\n")[0], "-Ccode-model=kernel");
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
