#!/usr/bin/env bash
# Regenerates the committed seed corpora in fuzz/seeds/<target>/ from the
# kernel trees installed under /lib/modules (and, when built, the example
# module in target/kmod). Seeds stay small: a few tiny in-tree modules,
# debug-stripped copies of hello.ko, and the first lines of each tree file.
set -euo pipefail
cd "$(dirname "$0")"
root=..
lines=200

rm -rf seeds
mkdir -p seeds/parse_ko seeds/parse_symvers seeds/parse_config seeds/parse_cmd_file

for build in /lib/modules/*/build; do
    [ -f "$build/Module.symvers" ] || continue
    dir=$(dirname "$build")
    release=$(basename "$dir")
    head -n "$lines" "$build/Module.symvers" >"seeds/parse_symvers/$release"
    head -n "$lines" "$build/include/config/auto.conf" >"seeds/parse_config/$release"

    # The two smallest in-tree modules (plain .ko in 6.1, .ko.xz in 6.12),
    # and the smallest that imports a symbol namespace.
    modules=$(find "$dir/kernel" \( -name '*.ko' -o -name '*.ko.xz' \) -size -20k -printf '%s %p\n' |
        sort -n | cut -d' ' -f2)
    picked=$(head -n 2 <<<"$modules")
    for module in $modules; do
        if [ -n "$(modinfo -F import_ns "$module")" ]; then
            picked="$picked $module"
            break
        fi
    done
    for module in $picked; do
        name=$(basename "$module" .xz)
        case $module in
        *.xz) xz -dc "$module" >"seeds/parse_ko/$release-$name" ;;
        *) cp "$module" "seeds/parse_ko/$release-$name" ;;
        esac
    done

    built="$root/target/kmod/$release"
    if [ -f "$built/hello.ko" ]; then
        strip --strip-debug -o "seeds/parse_ko/$release-hello.ko" "$built/hello.ko"
        # Kbuild .cmd files: `cmd_` (6.1) or `savedcmd_` (6.12) lines, some
        # with objtool's `;` tail. The first lines are all the parser reads.
        for cmd in "$built"/kbuild/hello/.hello.mod.o.cmd "$built"/kbuild/hello/.hello.o.cmd \
            "$built"/kbuild/hello/.hello.ko.cmd; do
            if [ -f "$cmd" ]; then
                head -n 6 "$cmd" >"seeds/parse_cmd_file/$release-$(basename "$cmd" | sed s/^[.]//)"
            fi
        done
    fi
done

# parse_ko checks every module against one fixed tree: the first release's
# exports that the seed modules import, and the options vermagic reads.
release=$(find seeds/parse_symvers -type f -printf '%f\n' | sort | head -n 1)
build=/lib/modules/$release/build
rm -rf fixture
mkdir fixture
echo "$release" >fixture/release
nm --undefined-only seeds/parse_ko/* 2>/dev/null | awk 'NF == 2 { print $2 }' | sort -u |
    awk -F'\t' 'NR == FNR { want[$1] = 1; next } $2 in want || $2 == "module_layout"' \
        - "$build/Module.symvers" >fixture/Module.symvers
grep -E '^CONFIG_(SMP|PREEMPT[A-Z_]*|MODULE_UNLOAD|MODVERSIONS|MODULE_SIG)=' \
    "$build/include/config/auto.conf" >fixture/auto.conf
du -sh seeds/* fixture
