//! `outbox-lab`: the command line lives in the library (`outbox_lab::cli`) so that the
//! examples, which the crash harness re-executes as children, can speak it too.

fn main() -> std::process::ExitCode {
    outbox_lab::cli::main()
}
