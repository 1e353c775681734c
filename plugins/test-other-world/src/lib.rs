//! A valid WebAssembly component that implements another world than
//! `sluice:operator/operator-world`: the host must refuse it with a clear message.

wit_bindgen::generate!({ path: "wit", world: "other" });

struct Other;

impl Guest for Other {
    fn process(x: u32) -> u32 {
        x.wrapping_add(1)
    }
}

export!(Other);
