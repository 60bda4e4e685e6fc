use std::process::ExitCode;

fn main() -> ExitCode {
    // Children inherit this mark, which lets cairn find the SSH master
    // connections it started (they detach from it) and stop them at exit.
    // SAFETY: nothing else runs yet: no other thread can read the environment.
    unsafe {
        std::env::set_var(
            cairn::store::remote::OWNER_VAR,
            std::process::id().to_string(),
        )
    };
    let code = cairn::cli::main();
    cairn::store::remote::stop_ssh_masters();
    code
}
