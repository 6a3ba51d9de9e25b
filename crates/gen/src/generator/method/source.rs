//! The TorchScript back end: bodies printed as PyTorch prints them in `code/`.

use super::*;

struct Printer {
    lines: Vec<String>,
    next: usize,
}

impl Printer {
    fn fresh(&mut self) -> String {
        let v = format!("_{}", self.next);
        self.next += 1;
        v
    }

    fn assign(&mut self, rhs: String) -> String {
        let v = self.fresh();
        self.lines.push(format!("{v} = {rhs}"));
        v
    }

    fn tuple(&mut self, items: &[Expr]) -> String {
        let names: Vec<String> = items.iter().map(|e| self.emit(e)).collect();
        self.assign(format!("({})", names.join(", ")))
    }

    /// Emits statements for `e`; returns the name holding its value.
    fn emit(&mut self, e: &Expr) -> String {
        match e {
            Expr::Input => "x".to_string(),
            Expr::Attr(n) => self.assign(format!("self.{n}")),
            Expr::Add { a, b, alpha } => {
                let a = self.emit(a);
                let b = self.emit(b);
                match alpha {
                    Some(k) => self.assign(format!("torch.add({a}, {b}, alpha={k})")),
                    None => self.assign(format!("torch.add({a}, {b})")),
                }
            }
            Expr::Mul(a, c) => {
                let a = self.emit(a);
                self.assign(format!("torch.mul({a}, {})", c.source()))
            }
            Expr::Unary(op, a) => {
                let a = self.emit(a);
                self.assign(format!("torch.{}({a})", op.name()))
            }
            Expr::Linear {
                input,
                weight,
                bias,
            } => {
                let a = self.emit(input);
                let w = self.assign(format!("self.{weight}"));
                match bias {
                    Some(b) => {
                        let b = self.assign(format!("self.{b}"));
                        self.assign(format!("torch.linear({a}, {w}, {b})"))
                    }
                    None => self.assign(format!("torch.linear({a}, {w})")),
                }
            }
            Expr::Child { child, arg } => {
                let a = self.emit(arg);
                let c = self.assign(format!("self.{child}"));
                self.assign(format!("({c}).forward({a}, )"))
            }
            Expr::Call { function, arg } => {
                let a = self.emit(arg);
                self.assign(format!("{}({a}, )", function.as_str()))
            }
            Expr::TupleIndex { items, index } => {
                let t = self.tuple(items);
                self.assign(format!("({t})[{index}]"))
            }
            Expr::TupleUnpack { items, index } => {
                let t = self.tuple(items);
                let names: Vec<String> = items.iter().map(|_| self.fresh()).collect();
                let targets: String = names.iter().map(|n| format!("{n}, ")).collect();
                self.lines.push(format!("{}= {t}", targets));
                names[*index].clone()
            }
        }
    }
}

fn body_source(body: &Expr) -> String {
    let mut p = Printer {
        lines: Vec::new(),
        next: 0,
    };
    let result = p.emit(body);
    let mut out = String::new();
    for l in &p.lines {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("  return {result}\n"));
    out
}

/// `forward` of `class` as PyTorch prints a method in `code/` (def at column 0, body
/// indented 2; [`ptconform_core::model::compose::ModuleBuilder::method_source`] takes it):
/// `def forward(self: CLASS,\n    x: Tensor) -> Tensor:\n  ...\n  return ...\n`.
pub fn forward_source(class: &QualifiedName, body: &Expr) -> String {
    format!(
        "def forward(self: {},\n    x: Tensor) -> Tensor:\n{}",
        class.as_str(),
        body_source(body)
    )
}

/// A free function as PyTorch prints it: `def helper_0(x: Tensor) -> Tensor:\n  ...`.
pub fn function_source(f: &Function) -> String {
    format!(
        "def {}(x: Tensor) -> Tensor:\n{}",
        f.name.name(),
        body_source(&f.body)
    )
}

/// The function as a definition of its unit (for `ModuleBuilder::define`).
pub fn function_definition(f: &Function) -> Result<Definition, ptconform_core::code::CodeError> {
    ptconform_core::code::parse_source(f.name.qualifier(), &function_source(f))?
        .into_iter()
        .next()
        .ok_or(ptconform_core::code::CodeError {
            line: 1,
            message: "no definition".into(),
        })
}
