use clap::Parser;

fn main() {
    let cli = ptconform::cli::Cli::parse();
    std::process::exit(ptconform::cli::run(cli));
}
