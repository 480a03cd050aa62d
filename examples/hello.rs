use tinyserve::App;

fn main() -> tinyserve::Result<()> {
    App::new()
        .get("/", |_| "Hello, world!")
        .run("127.0.0.1:8000")
}
