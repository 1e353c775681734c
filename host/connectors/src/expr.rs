//! `order_by` expressions: arithmetic over columns and integer literals.
//!
//! Grammar: `expr := term (('+' | '-') term)*`, `term := unary (('*' | '/') unary)*`,
//! `unary := '-' unary | atom`, `atom := integer | column | '(' expr ')'`, where a
//! column is an identifier (`[A-Za-z_][A-Za-z0-9_.]*`) or a double-quoted name.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// An integer literal.
    Lit(i64),
    /// Column, by index into the expression's column list.
    Col(usize),
    /// Negation.
    Neg(Box<Expr>),
    /// Binary operation.
    Bin(Op, Box<Expr>, Box<Expr>),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// An expression and the distinct column names it reads (indexed by [`Expr::Col`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub expr: Expr,
    pub columns: Vec<String>,
}

/// Parses `src`; errors give the 1-based character position and what was expected.
pub(crate) fn parse(src: &str) -> Result<Parsed, String> {
    let mut p = Parser {
        s: src,
        chars: src.char_indices().collect(),
        i: 0,
        columns: Vec::new(),
    };
    let expr = p.expr()?;
    p.skip_ws();
    if p.i < p.chars.len() {
        return Err(p.err("expected an operator (+ - * /) or the end"));
    }
    Ok(Parsed {
        expr,
        columns: p.columns,
    })
}

struct Parser<'a> {
    s: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    columns: Vec<String>,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        match self.chars.get(self.i) {
            Some((_, c)) => format!("in '{}' at position {} ('{c}'): {what}", self.s, self.i + 1),
            None => format!(
                "in '{}' at position {} (the end): {what}",
                self.s,
                self.i + 1
            ),
        }
    }
    fn skip_ws(&mut self) {
        while self
            .chars
            .get(self.i)
            .is_some_and(|(_, c)| c.is_whitespace())
        {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.i).map(|&(_, c)| c)
    }
    fn expr(&mut self) -> Result<Expr, String> {
        self.binary(&[('+', Op::Add), ('-', Op::Sub)], Self::term)
    }
    fn term(&mut self) -> Result<Expr, String> {
        self.binary(&[('*', Op::Mul), ('/', Op::Div)], Self::unary)
    }
    /// `operand (op operand)*` over the operators `ops`, left-associative.
    fn binary(
        &mut self,
        ops: &[(char, Op)],
        operand: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = operand(self)?;
        while let Some(op) = self
            .peek()
            .and_then(|c| ops.iter().find(|(o, _)| *o == c).map(|&(_, op)| op))
        {
            self.i += 1;
            let right = operand(self)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some('-') {
            self.i += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }
    /// Consumes characters while `keep` holds; returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.i;
        while self.chars.get(self.i).is_some_and(|&(_, c)| keep(c)) {
            self.i += 1;
        }
        self.chars[start..self.i].iter().map(|&(_, c)| c).collect()
    }
    fn column(&mut self, name: String) -> Expr {
        let idx = match self.columns.iter().position(|c| *c == name) {
            Some(i) => i,
            None => {
                self.columns.push(name);
                self.columns.len() - 1
            }
        };
        Expr::Col(idx)
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some('(') => {
                self.i += 1;
                let e = self.expr()?;
                if self.peek() != Some(')') {
                    return Err(self.err("expected ')'"));
                }
                self.i += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                let text = self.take_while(|c| c.is_ascii_digit());
                if self
                    .chars
                    .get(self.i)
                    .is_some_and(|(_, c)| c.is_alphanumeric() || *c == '.' || *c == '_')
                {
                    return Err(self.err("only integer literals are allowed"));
                }
                let v = text.parse::<i64>().map_err(|_| {
                    self.i = start;
                    self.err("integer literal out of range")
                })?;
                Ok(Expr::Lit(v))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.take_while(|c| c.is_alphanumeric() || c == '_' || c == '.');
                Ok(self.column(name))
            }
            Some('"') => {
                let quote = self.i;
                self.i += 1;
                let name = self.take_while(|c| c != '"');
                if self.i >= self.chars.len() {
                    self.i = quote;
                    return Err(self.err("unterminated quoted column name"));
                }
                self.i += 1;
                Ok(self.column(name))
            }
            _ => Err(self.err("expected a column name, an integer or '('")),
        }
    }
}

impl Expr {
    /// Evaluates over whole columns (`cols[i]` is column `i`, each `n` values) with
    /// integer arithmetic (`/` truncates toward zero); `Err(row)` names the first row that overflows or divides
    /// by zero.
    pub(crate) fn eval_vec_i64(&self, cols: &[Vec<i64>], n: usize) -> Result<Vec<i64>, usize> {
        Ok(match self {
            Expr::Lit(v) => vec![*v; n],
            Expr::Col(i) => cols[*i].clone(),
            Expr::Neg(e) => {
                let mut x = e.eval_vec_i64(cols, n)?;
                for (r, v) in x.iter_mut().enumerate() {
                    *v = v.checked_neg().ok_or(r)?;
                }
                x
            }
            Expr::Bin(op, a, b) => {
                let mut x = a.eval_vec_i64(cols, n)?;
                let y = b.eval_vec_i64(cols, n)?;
                let f = match op {
                    Op::Add => i64::checked_add,
                    Op::Sub => i64::checked_sub,
                    Op::Mul => i64::checked_mul,
                    Op::Div => i64::checked_div,
                };
                for (r, (v, w)) in x.iter_mut().zip(&y).enumerate() {
                    *v = f(*v, *w).ok_or(r)?;
                }
                x
            }
        })
    }

    /// Like [`Expr::eval_vec_i64`] with `f64` arithmetic (no errors: IEEE rules).
    pub(crate) fn eval_vec_f64(&self, cols: &[Vec<f64>], n: usize) -> Vec<f64> {
        match self {
            Expr::Lit(v) => vec![*v as f64; n],
            Expr::Col(i) => cols[*i].clone(),
            Expr::Neg(e) => {
                let mut x = e.eval_vec_f64(cols, n);
                x.iter_mut().for_each(|v| *v = -*v);
                x
            }
            Expr::Bin(op, a, b) => {
                let mut x = a.eval_vec_f64(cols, n);
                let y = b.eval_vec_f64(cols, n);
                for (v, w) in x.iter_mut().zip(&y) {
                    *v = match op {
                        Op::Add => *v + w,
                        Op::Sub => *v - w,
                        Op::Mul => *v * w,
                        Op::Div => *v / w,
                    };
                }
                x
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, vals: &[(&str, i64)]) -> i64 {
        let p = parse(src).unwrap();
        let v: Vec<Vec<i64>> = p
            .columns
            .iter()
            .map(|c| vec![vals.iter().find(|(n, _)| n == c).unwrap().1])
            .collect();
        p.expr.eval_vec_i64(&v, 1).unwrap()[0]
    }

    #[test]
    fn precedence_and_parens() {
        assert_eq!(
            eval("date + delay * 60000", &[("date", 5), ("delay", 2)]),
            120_005
        );
        assert_eq!(
            eval("(a + b) * 2 - -c / 2", &[("a", 1), ("b", 2), ("c", 7)]),
            9
        );
        assert_eq!(eval("a - b - c", &[("a", 10), ("b", 3), ("c", 2)]), 5);
        assert_eq!(eval("\"odd name\" * 2", &[("odd name", 4)]), 8);
        assert_eq!(parse("a + a * b").unwrap().columns, vec!["a", "b"]);
    }

    #[test]
    fn errors_name_the_position() {
        let e = parse("date + * 3").unwrap_err();
        assert!(e.contains("'date + * 3' at position 8 ('*')"), "{e}");
        let e = parse("(a + b").unwrap_err();
        assert!(e.contains("position 7 (the end): expected ')'"), "{e}");
        assert!(parse("a b").unwrap_err().contains("position 3"));
        assert!(parse("1.5 * a").unwrap_err().contains("integer"));
        assert!(parse("").is_err());
        assert!(parse("a % b").is_err());
        let e = parse("a + \"b c").unwrap_err();
        assert!(
            e.contains("at position 5 ('\"'): unterminated quoted column name"),
            "{e}"
        );
        let e = parse("a * 99999999999999999999").unwrap_err();
        assert!(
            e.contains("at position 5 ('9'): integer literal out of range"),
            "{e}"
        );
    }

    #[test]
    fn overflow_and_division_by_zero_name_the_row() {
        let p = parse("a * 2").unwrap();
        assert_eq!(p.expr.eval_vec_i64(&[vec![1, 2, i64::MAX, 3]], 4), Err(2));
        let p = parse("-(a - 3) / b").unwrap();
        assert_eq!(
            p.expr.eval_vec_i64(&[vec![1, 9, 5], vec![1, 2, 0]], 3),
            Err(2)
        );
        assert_eq!(
            p.expr.eval_vec_i64(&[vec![1, 9], vec![1, 2]], 2),
            Ok(vec![2, -3])
        );
        assert_eq!(
            p.expr.eval_vec_f64(&[vec![1.0, 9.0], vec![1.0, 0.0]], 2),
            vec![2.0, f64::NEG_INFINITY]
        );
    }
}
