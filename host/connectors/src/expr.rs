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
        let mut left = self.term()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.i += 1;
            let right = self.term()?;
            let op = if c == '+' { Op::Add } else { Op::Sub };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(c @ ('*' | '/')) = self.peek() {
            self.i += 1;
            let right = self.unary()?;
            let op = if c == '*' { Op::Mul } else { Op::Div };
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
                while self
                    .chars
                    .get(self.i)
                    .is_some_and(|(_, c)| c.is_ascii_digit())
                {
                    self.i += 1;
                }
                if self
                    .chars
                    .get(self.i)
                    .is_some_and(|(_, c)| c.is_alphanumeric() || *c == '.' || *c == '_')
                {
                    return Err(self.err("only integer literals are allowed"));
                }
                let text: String = self.chars[start..self.i].iter().map(|&(_, c)| c).collect();
                let v = text.parse::<i64>().map_err(|_| {
                    self.i = start;
                    self.err("integer literal out of range")
                })?;
                Ok(Expr::Lit(v))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.i;
                while self
                    .chars
                    .get(self.i)
                    .is_some_and(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    self.i += 1;
                }
                let name: String = self.chars[start..self.i].iter().map(|&(_, c)| c).collect();
                Ok(self.column(name))
            }
            Some('"') => {
                self.i += 1;
                let start = self.i;
                while self.chars.get(self.i).is_some_and(|(_, c)| *c != '"') {
                    self.i += 1;
                }
                if self.i >= self.chars.len() {
                    self.i = start - 1;
                    return Err(self.err("unterminated quoted column name"));
                }
                let name: String = self.chars[start..self.i].iter().map(|&(_, c)| c).collect();
                self.i += 1;
                Ok(self.column(name))
            }
            _ => Err(self.err("expected a column name, an integer or '('")),
        }
    }
}

impl Expr {
    /// Evaluates with integer arithmetic (`/` truncates toward zero); `None` on
    /// overflow or division by zero. `col(i)` gives column `i`'s value.
    #[inline]
    pub(crate) fn eval_i64(&self, col: &impl Fn(usize) -> i64) -> Option<i64> {
        Some(match self {
            Expr::Lit(v) => *v,
            Expr::Col(i) => col(*i),
            Expr::Neg(e) => e.eval_i64(col)?.checked_neg()?,
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval_i64(col)?, b.eval_i64(col)?);
                match op {
                    Op::Add => a.checked_add(b)?,
                    Op::Sub => a.checked_sub(b)?,
                    Op::Mul => a.checked_mul(b)?,
                    Op::Div => a.checked_div(b)?,
                }
            }
        })
    }

    /// Evaluates with `f64` arithmetic (used when a column is a float).
    #[inline]
    pub(crate) fn eval_f64(&self, col: &impl Fn(usize) -> f64) -> f64 {
        match self {
            Expr::Lit(v) => *v as f64,
            Expr::Col(i) => col(*i),
            Expr::Neg(e) => -e.eval_f64(col),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval_f64(col), b.eval_f64(col));
                match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div => a / b,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, vals: &[(&str, i64)]) -> i64 {
        let p = parse(src).unwrap();
        let v: Vec<i64> = p
            .columns
            .iter()
            .map(|c| vals.iter().find(|(n, _)| n == c).unwrap().1)
            .collect();
        p.expr.eval_i64(&|i| v[i]).unwrap()
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
    }

    #[test]
    fn overflow_and_division_by_zero_are_none() {
        let p = parse("a / b").unwrap();
        assert_eq!(p.expr.eval_i64(&|i| [1, 0][i]), None);
        let p = parse("a * 2").unwrap();
        assert_eq!(p.expr.eval_i64(&|_| i64::MAX), None);
    }
}
