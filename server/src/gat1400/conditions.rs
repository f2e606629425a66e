//! The query conditions of `GET /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles`
//! (GA/T 1400.4): the query string as the clients in the field write it, read into
//! an [`ObjectQuery`] and a page. Three forms are read, and may be mixed:
//!
//! * the standard's parenthesised conditions, `&`-joined: `(MotorVehicle.PassTime
//!   BETWEEN '20210901000000' and '20210902000000')&(MotorVehicle.PlateNo =
//!   '苏E12345')&(Sort = MotorVehicle.PassTime)&(PageRecordNum=25)`, with `=`, `!=`/`<>`
//!   refused, `>`, `>=`, `<`, `<=`, `BETWEEN … AND …`, `IN (a, b)` and `AND` inside a
//!   condition (`OR` is refused);
//! * plain pairs: `DeviceID=…&RecordStartNo=1&PageRecordNum=20` (an attribute with or
//!   without its object's prefix, `Face.DeviceID`);
//! * suffixed pairs: `Face.ShotTime.Gte=…`, `.Gt`, `.Lte`, `.Lt`, `.Eq`, `.In` (comma
//!   list) and `Face.ShotTime.Order=desc`.
//!
//! Attribute names are matched without regard to case. A condition this 视图库 cannot
//! answer is refused naming it ([`BadCondition`]), never ignored: an ignored condition
//! would answer objects the caller did not ask for.

use sightline_query::ObjectQuery;
use sightline_storage::Kind;

use super::objects::Upload;

/// Records per page when the request names none.
pub const DEFAULT_PAGE_RECORD_NUM: usize = 100;
/// Most records per page (`PageRecordNum`): each is a whole object as uploaded.
pub const MAX_PAGE_RECORD_NUM: usize = 1000;
/// The time range when no time condition is given: everything the store holds
/// (1970 up to 2100), bounded by the query timeout.
pub(crate) const ALL_TIME: (i64, i64) = (0, 4_102_444_800_000);
/// The longest query string read (longer is refused): conditions, not data.
pub const MAX_QUERY_BYTES: usize = 8 << 10;

/// A condition refused: the field as the request wrote it, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BadCondition {
    pub field: String,
    pub why: String,
}

impl std::fmt::Display for BadCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

fn bad(field: &str, why: impl Into<String>) -> BadCondition {
    BadCondition {
        field: field.to_string(),
        why: why.into(),
    }
}

/// Which page: the first record's number (1-based) and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub record_start_no: usize,
    pub page_record_num: usize,
    /// `MaxNumRecordReturn`: no record past this many is answered (none: no cap).
    pub max_num_record_return: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Between,
    In,
    Like,
}

/// One condition: the name as written, the operator, its values.
#[derive(Debug)]
struct Cond {
    name: String,
    op: Op,
    values: Vec<String>,
}

/// The query and page `query` (the raw query string) asks of `upload`'s resource; a
/// face or person's subject is its `face_subject` field.
pub fn parse(
    upload: Upload,
    face_subject: &str,
    query: Option<&str>,
) -> Result<(ObjectQuery, Page), BadCondition> {
    Plan::new(upload, face_subject).apply(conditions(query)?)
}

/// The conditions of a raw query string, in the three forms, as written.
fn conditions(query: Option<&str>) -> Result<Vec<Cond>, BadCondition> {
    let raw = query.unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(bad(
            "query",
            format!("the query string may hold {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mut conds = Vec::new();
    for piece in raw.split('&').filter(|p| !p.trim().is_empty()) {
        let text = decode(piece).map_err(|why| bad(piece, why))?;
        let text = text.trim();
        if text.starts_with('(') {
            let tokens = tokenize(text).map_err(|why| bad(text, why))?;
            let mut p = Parser {
                tokens,
                at: 0,
                depth: 0,
            };
            p.expr(&mut conds)?;
            if p.at != p.tokens.len() {
                return Err(bad(text, "unexpected text after the condition"));
            }
        } else {
            conds.push(pair(text)?);
        }
    }
    Ok(conds)
}

/// A piece of the query string decoded: `%XX` and `+` for a space.
fn decode(piece: &str) -> Result<String, String> {
    let spaced = piece.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "not UTF-8 once percent-decoded".to_string())
}

/// `name=value`, or `name.Gte=value` and the other suffixes.
fn pair(text: &str) -> Result<Cond, BadCondition> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(bad(
            text,
            "expected name=value or a condition in parentheses",
        ));
    };
    let (name, value) = (name.trim(), unquote(value.trim()));
    let suffixes = [
        ("gte", Op::Ge),
        ("gt", Op::Gt),
        ("lte", Op::Le),
        ("lt", Op::Lt),
        ("eq", Op::Eq),
        ("neq", Op::Ne),
        ("in", Op::In),
        ("like", Op::Like),
    ];
    if let Some((base, suffix)) = name.rsplit_once('.') {
        if let Some((_, op)) = suffixes
            .iter()
            .find(|(s, _)| suffix.eq_ignore_ascii_case(s))
        {
            let values = match op {
                Op::In => value.split(',').map(|v| v.trim().to_string()).collect(),
                _ => vec![value.to_string()],
            };
            return Ok(Cond {
                name: base.to_string(),
                op: *op,
                values,
            });
        }
        if suffix.eq_ignore_ascii_case("order") {
            return Ok(Cond {
                name: "Sort".into(),
                op: Op::Eq,
                values: vec![format!("{base} {value}")],
            });
        }
    }
    Ok(Cond {
        name: name.to_string(),
        op: Op::Eq,
        values: vec![value.to_string()],
    })
}

fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Comma,
    Op(Op),
    Word(String),
    Quoted(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '\'' | '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, x)) if x == c => break,
                        Some((_, x)) => s.push(x),
                        None => return Err(format!("an unterminated quote at {i}")),
                    }
                }
                out.push(Token::Quoted(s));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.peek().map(|(_, x)| *x);
                let (op, two) = match (c, next) {
                    ('>', Some('=')) => (Op::Ge, true),
                    ('<', Some('=')) => (Op::Le, true),
                    ('<', Some('>')) | ('!', Some('=')) => (Op::Ne, true),
                    ('>', _) => (Op::Gt, false),
                    ('<', _) => (Op::Lt, false),
                    ('=', _) => (Op::Eq, false),
                    _ => return Err(format!("{c:?} is not an operator")),
                };
                if two {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            _ => {
                let mut s = String::from(c);
                while let Some((_, x)) = chars.peek() {
                    if x.is_whitespace() || "()',=!<>\"".contains(*x) {
                        break;
                    }
                    s.push(*x);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
        }
    }
    Ok(out)
}

/// Deepest nesting of parentheses in a query's conditions (each level is a
/// recursion of the parser: ~8 KiB of `(` would otherwise overflow its stack).
pub const MAX_NESTING: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses open around the term being read (at most [`MAX_NESTING`]: the
    /// parser recurses once a level).
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    /// term { AND term }
    fn expr(&mut self, out: &mut Vec<Cond>) -> Result<(), BadCondition> {
        self.term(out)?;
        loop {
            if self.keyword("AND") {
                self.at += 1;
                self.term(out)?;
            } else if self.keyword("OR") {
                return Err(bad(
                    "OR",
                    "conditions joined by OR are not answered: send one query per alternative, or IN (…)",
                ));
            } else {
                return Ok(());
            }
        }
    }

    /// ( expr ) | condition
    fn term(&mut self, out: &mut Vec<Cond>) -> Result<(), BadCondition> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(bad(
                    "(",
                    format!("parentheses nested deeper than {MAX_NESTING}"),
                ));
            }
            self.expr(out)?;
            self.depth -= 1;
            return match self.next() {
                Some(Token::Close) => Ok(()),
                _ => Err(bad("(", "a parenthesis is not closed")),
            };
        }
        let name = match self.next() {
            Some(Token::Word(w)) => w,
            other => return Err(bad(&format!("{other:?}"), "expected an attribute name")),
        };
        let (op, values) = match self.next() {
            Some(Token::Op(op)) => (op, vec![self.value(&name)?]),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("BETWEEN") => {
                let lo = self.value(&name)?;
                if !self.keyword("AND") {
                    return Err(bad(&name, "BETWEEN takes two values joined by AND"));
                }
                self.at += 1;
                (Op::Between, vec![lo, self.value(&name)?])
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                if self.next() != Some(Token::Open) {
                    return Err(bad(&name, "IN takes a list in parentheses"));
                }
                let mut values = vec![self.value(&name)?];
                loop {
                    match self.next() {
                        Some(Token::Comma) => values.push(self.value(&name)?),
                        Some(Token::Close) => break,
                        _ => return Err(bad(&name, "IN's list is not closed")),
                    }
                }
                (Op::In, values)
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("LIKE") => {
                (Op::Like, vec![self.value(&name)?])
            }
            _ => {
                return Err(bad(
                    &name,
                    "expected an operator (=, >, >=, <, <=, BETWEEN, IN)",
                ))
            }
        };
        // `Sort = X DESC`: the order word belongs to the value.
        let mut values = values;
        if name.eq_ignore_ascii_case("Sort") && (self.keyword("DESC") || self.keyword("ASC")) {
            if let Some(Token::Word(w)) = self.next() {
                values[0] = format!("{} {w}", values[0]);
            }
        }
        out.push(Cond { name, op, values });
        Ok(())
    }

    fn value(&mut self, name: &str) -> Result<String, BadCondition> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => Ok(w),
            _ => Err(bad(name, "a value is missing")),
        }
    }
}

/// What a resource's conditions mean, and the query being built.
struct Plan<'a> {
    upload: Upload,
    face_subject: &'a str,
    query: ObjectQuery,
    page: Page,
}

/// How a condition's field is answered.
enum Field {
    Id,
    Device,
    Tollgate,
    Time,
    Subject,
    Attr(&'static str),
    RecordStartNo,
    PageRecordNum,
    MaxNumRecordReturn,
    Sort,
}

impl<'a> Plan<'a> {
    fn new(upload: Upload, face_subject: &'a str) -> Plan<'a> {
        let kind = Kind::parse(upload.kind()).expect("every upload kind is a kind");
        Plan {
            upload,
            face_subject,
            query: ObjectQuery {
                kind: Some(kind),
                from_ms: ALL_TIME.0,
                to_ms: ALL_TIME.1,
                ..ObjectQuery::default()
            },
            page: Page {
                record_start_no: 1,
                page_record_num: DEFAULT_PAGE_RECORD_NUM,
                max_num_record_return: None,
            },
        }
    }

    /// The object name a prefix may give (`MotorVehicle.PlateNo`).
    fn object_name(&self) -> &'static str {
        let (_, item, _) = self.upload.names();
        item.strip_suffix("Object").unwrap_or(item)
    }

    /// The field `name` (as written) names, or why it is refused.
    fn field(&self, name: &str) -> Result<Field, BadCondition> {
        let bare = match name.split_once('.') {
            Some((prefix, rest)) => {
                let others = ["MotorVehicle", "Face", "Person", "NonMotorVehicle"];
                if prefix.eq_ignore_ascii_case(self.object_name()) {
                    rest
                } else if others.iter().any(|o| prefix.eq_ignore_ascii_case(o)) {
                    return Err(bad(
                        name,
                        format!(
                            "names a {prefix} attribute; this resource holds {} objects",
                            self.object_name()
                        ),
                    ));
                } else {
                    return Err(bad(name, "not an attribute of this resource"));
                }
            }
            None => name,
        };
        let is = |s: &str| bare.eq_ignore_ascii_case(s);
        let (_, _, ids) = self.upload.names();
        let vehicle = matches!(self.upload, Upload::Vehicles | Upload::NonMotorVehicles);
        let field = if ids.iter().any(|f| is(f)) {
            Field::Id
        } else if is("DeviceID") || is("ApeID") {
            Field::Device
        } else if is("TollgateID") {
            Field::Tollgate
        } else if self.upload.time_fields().iter().any(|f| is(f)) || is("CreateTime") {
            Field::Time
        } else if (vehicle && is("PlateNo")) || (!vehicle && is(self.face_subject)) {
            Field::Subject
        } else if is("RecordStartNo") {
            Field::RecordStartNo
        } else if is("PageRecordNum") {
            Field::PageRecordNum
        } else if is("MaxNumRecordReturn") {
            Field::MaxNumRecordReturn
        } else if is("Sort") {
            Field::Sort
        } else if let Some(attr) = self.attr(bare) {
            Field::Attr(attr)
        } else {
            return Err(bad(
                name,
                format!("not a condition this 视图库 answers ({})", self.answered()),
            ));
        };
        Ok(field)
    }

    /// The stored attribute an object field is kept as.
    fn attr(&self, bare: &str) -> Option<&'static str> {
        let fields: &[(&str, &'static str)] = match self.upload {
            Upload::Vehicles => &[
                ("PlateColor", "plate_color"),
                ("VehicleColor", "vehicle_color"),
                ("VehicleClass", "vehicle_class"),
                ("VehicleBrand", "vehicle_brand"),
            ],
            Upload::NonMotorVehicles => &[
                ("PlateColor", "plate_color"),
                ("VehicleColor", "vehicle_color"),
                ("VehicleType", "vehicle_type"),
                ("VehicleBrand", "vehicle_brand"),
            ],
            Upload::Faces | Upload::Persons => &[],
        };
        fields
            .iter()
            .find(|(f, _)| bare.eq_ignore_ascii_case(f))
            .map(|(_, a)| *a)
    }

    /// The conditions this resource answers, for a refusal's text.
    fn answered(&self) -> String {
        let (_, _, ids) = self.upload.names();
        let subject = match self.upload {
            Upload::Vehicles | Upload::NonMotorVehicles => "PlateNo",
            _ => self.face_subject,
        };
        let mut names = vec![ids[0], "DeviceID", "TollgateID", subject];
        names.extend(self.upload.time_fields());
        names.extend(match self.upload {
            Upload::Vehicles => &["PlateColor", "VehicleColor", "VehicleClass", "VehicleBrand"][..],
            Upload::NonMotorVehicles => {
                &["PlateColor", "VehicleColor", "VehicleType", "VehicleBrand"][..]
            }
            _ => &[][..],
        });
        names.join(", ")
    }

    fn apply(mut self, conds: Vec<Cond>) -> Result<(ObjectQuery, Page), BadCondition> {
        for c in conds {
            self.one(c)?;
        }
        let skip = self.page.record_start_no - 1;
        let limit = self.page.page_record_num;
        if skip.saturating_add(limit) > sightline_query::MAX_OBJECT_DEPTH {
            return Err(bad(
                "RecordStartNo",
                format!(
                    "a page may reach at most {} records deep: narrow the conditions (time, DeviceID)",
                    sightline_query::MAX_OBJECT_DEPTH
                ),
            ));
        }
        self.query.skip = skip;
        self.query.limit = limit;
        Ok((self.query, self.page))
    }

    fn one(&mut self, c: Cond) -> Result<(), BadCondition> {
        let name = c.name.as_str();
        let equal_only = |c: &Cond| match c.op {
            Op::Eq | Op::In => Ok(c.values.clone()),
            _ => Err(bad(
                &c.name,
                "only = and IN (…) are answered for this field",
            )),
        };
        match self.field(name)? {
            Field::Id => {
                let v = equal_only(&c)?;
                self.query.attrs.push(("source_id".into(), v));
            }
            Field::Attr(attr) => {
                let v = equal_only(&c)?;
                self.query.attrs.push((attr.into(), v));
            }
            Field::Device => {
                let v = equal_only(&c)?;
                self.query.devices = Some(intersect(self.query.devices.take(), v));
            }
            // The tollgate's own camera's objects, and another camera's naming it.
            Field::Tollgate => {
                let v = equal_only(&c)?;
                self.query.tollgates = Some(intersect(self.query.tollgates.take(), v));
            }
            Field::Subject => {
                let v = equal_only(&c)?;
                self.query.subjects = Some(intersect(self.query.subjects.take(), v));
            }
            Field::Time => self.time(&c)?,
            Field::RecordStartNo => {
                let n = number(&c)?;
                // 0 is read as the first record, as clients counting from 0 send it.
                self.page.record_start_no = n.max(1);
            }
            Field::PageRecordNum => {
                let n = number(&c)?;
                if n == 0 || n > MAX_PAGE_RECORD_NUM {
                    return Err(bad(
                        name,
                        format!("must be 1 to {MAX_PAGE_RECORD_NUM}, got {n}"),
                    ));
                }
                self.page.page_record_num = n;
            }
            Field::MaxNumRecordReturn => {
                // 0: no cap, as clients send it.
                let n = number(&c)?;
                self.page.max_num_record_return = (n > 0).then_some(n);
            }
            Field::Sort => self.sort(&c)?,
        }
        Ok(())
    }

    fn time(&mut self, c: &Cond) -> Result<(), BadCondition> {
        let t = |v: &str| time_of(&c.name, v);
        let (from, to) = match c.op {
            Op::Eq => {
                let (at, grain) = t(&c.values[0])?;
                (at, at + grain)
            }
            Op::Gt => {
                let (at, grain) = t(&c.values[0])?;
                (at + grain, ALL_TIME.1)
            }
            Op::Ge => (t(&c.values[0])?.0, ALL_TIME.1),
            Op::Lt => (ALL_TIME.0, t(&c.values[0])?.0),
            Op::Le => {
                let (at, grain) = t(&c.values[0])?;
                (ALL_TIME.0, at + grain)
            }
            Op::Between => {
                let (lo, _) = t(&c.values[0])?;
                let (hi, grain) = t(&c.values[1])?;
                (lo, hi + grain)
            }
            Op::Ne | Op::In | Op::Like => {
                return Err(bad(
                    &c.name,
                    "a time takes =, >, >=, <, <= or BETWEEN … AND …",
                ))
            }
        };
        self.query.from_ms = self.query.from_ms.max(from);
        self.query.to_ms = self.query.to_ms.min(to);
        Ok(())
    }

    fn sort(&mut self, c: &Cond) -> Result<(), BadCondition> {
        if c.op != Op::Eq {
            return Err(bad("Sort", "Sort = <time attribute> [ASC|DESC]"));
        }
        let mut words = c.values[0].split_whitespace();
        let by = words.next().unwrap_or("");
        let order = words.next().unwrap_or("ASC");
        if !matches!(self.field(by), Ok(Field::Time)) {
            return Err(bad(
                "Sort",
                format!(
                    "{by:?}: objects are sorted by their time ({}) only",
                    self.upload.time_fields()[0]
                ),
            ));
        }
        self.query.newest_first = match order.to_ascii_uppercase().as_str() {
            "ASC" => false,
            "DESC" => true,
            _ => return Err(bad("Sort", format!("{order:?} is neither ASC nor DESC"))),
        };
        Ok(())
    }
}

/// Values of a repeated equality: those in both (the first time, all given).
fn intersect(had: Option<Vec<String>>, given: Vec<String>) -> Vec<String> {
    match had {
        None => given,
        Some(had) => had.into_iter().filter(|v| given.contains(v)).collect(),
    }
}

fn number(c: &Cond) -> Result<usize, BadCondition> {
    if c.op != Op::Eq {
        return Err(bad(&c.name, "takes = and a number"));
    }
    c.values[0]
        .trim()
        .parse()
        .map_err(|_| bad(&c.name, format!("{:?} is not a whole number", c.values[0])))
}

/// A GA/T 1400 time (`YYYYMMDDhhmmss`, with milliseconds `…SSS`; `YYYY-MM-DD hh:mm:ss`
/// as some clients write it) in epoch ms, and its grain (a second, or a millisecond).
fn time_of(field: &str, v: &str) -> Result<(i64, i64), BadCondition> {
    let refuse = || {
        bad(
            field,
            format!("{v:?} is not a time like 20210901080000 (Beijing time)"),
        )
    };
    if !v.chars().all(|c| c.is_ascii_digit() || "-: T.".contains(c)) {
        return Err(refuse());
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let at = super::parse_time(&digits).ok_or_else(refuse)?;
    Ok((at, if digits.len() == 17 { 1 } else { 1000 }))
}

/// The attributes of a `SubscribeObject` (GA/T 1400.3 订阅对象) a `GET /VIID/Subscribes`
/// condition may name.
pub const SUBSCRIBE_ATTRIBUTES: &[&str] = &[
    "SubscribeID",
    "Title",
    "SubscribeDetail",
    "ResourceURI",
    "ApplicantName",
    "ApplicantOrg",
    "BeginTime",
    "EndTime",
    "ReceiveAddr",
    "ReportInterval",
    "Reason",
    "OperateType",
    "SubscribeStatus",
    "SubscribeCancelOrg",
    "SubscribeCancelPerson",
    "CancelTime",
    "CancelReason",
    "ResultImageDeclare",
    "ResultFeatureDeclare",
    "TabID",
];

/// Conditions over a list of records a platform keeps here (its subscriptions), and
/// the page asked: read as object queries' conditions are (the three forms), each
/// naming one of the record's attributes; every operator is answered.
#[derive(Debug)]
pub struct RecordQuery {
    /// `(attribute as the record names it, operator, values)`.
    conds: Vec<(&'static str, Op, Vec<String>)>,
    pub page: Page,
}

/// The conditions `query` (the raw query string) asks of records of `object`
/// (`Subscribe`: its attributes `attributes`, with or without the `Subscribe.` or
/// `SubscribeObject.` prefix).
pub fn records(
    object: &str,
    attributes: &[&'static str],
    query: Option<&str>,
) -> Result<RecordQuery, BadCondition> {
    let mut out = RecordQuery {
        conds: Vec::new(),
        page: Page {
            record_start_no: 1,
            page_record_num: DEFAULT_PAGE_RECORD_NUM,
            max_num_record_return: None,
        },
    };
    for c in conditions(query)? {
        let bare = match c.name.split_once('.') {
            Some((prefix, rest))
                if prefix.eq_ignore_ascii_case(object)
                    || prefix.eq_ignore_ascii_case(&format!("{object}Object")) =>
            {
                rest
            }
            Some(_) => return Err(bad(&c.name, format!("not an attribute of a {object}"))),
            None => c.name.as_str(),
        };
        let is = |s: &str| bare.eq_ignore_ascii_case(s);
        if is("RecordStartNo") {
            out.page.record_start_no = number(&c)?.max(1);
        } else if is("PageRecordNum") {
            let n = number(&c)?;
            if n == 0 || n > MAX_PAGE_RECORD_NUM {
                return Err(bad(
                    &c.name,
                    format!("must be 1 to {MAX_PAGE_RECORD_NUM}, got {n}"),
                ));
            }
            out.page.page_record_num = n;
        } else if is("MaxNumRecordReturn") {
            let n = number(&c)?;
            out.page.max_num_record_return = (n > 0).then_some(n);
        } else if let Some(a) = attributes.iter().find(|a| is(a)) {
            if a.ends_with("Time") && c.op != Op::Like {
                for v in &c.values {
                    time_of(&c.name, v)?;
                }
            }
            if c.op == Op::Like && c.values[0].chars().count() > MAX_LIKE_CHARS {
                return Err(bad(
                    &c.name,
                    format!("a LIKE pattern may hold {MAX_LIKE_CHARS} characters"),
                ));
            }
            out.conds.push((a, c.op, c.values));
        } else {
            return Err(bad(
                &c.name,
                format!(
                    "not a {object} attribute ({}; RecordStartNo, PageRecordNum, MaxNumRecordReturn)",
                    attributes.join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

impl RecordQuery {
    /// Whether `record` meets every condition (an attribute it lacks meets none but
    /// `!=`).
    pub fn keeps(&self, record: &serde_json::Value) -> bool {
        self.conds.iter().all(|(a, op, values)| {
            let Some(have) = super::text(record, a) else {
                return *op == Op::Ne;
            };
            let cmp = |v: &String| compare(a, &have, v);
            use std::cmp::Ordering::*;
            match op {
                Op::Eq => cmp(&values[0]) == Equal,
                Op::Ne => cmp(&values[0]) != Equal,
                Op::Gt => cmp(&values[0]) == Greater,
                Op::Ge => cmp(&values[0]) != Less,
                Op::Lt => cmp(&values[0]) == Less,
                Op::Le => cmp(&values[0]) != Greater,
                Op::Between => cmp(&values[0]) != Less && cmp(&values[1]) != Greater,
                Op::In => values.iter().any(|v| cmp(v) == Equal),
                Op::Like => like(&have, &values[0]),
            }
        })
    }

    /// The page of `records` (in the order given) the query asks: those kept, from
    /// `RecordStartNo`, at most `PageRecordNum` (and none past `MaxNumRecordReturn`);
    /// and how many were kept in all (cut to `MaxNumRecordReturn`).
    /// A `LIKE` costs its value's length times its pattern's: bounded over the whole
    /// list before any is run ([`MAX_LIKE_STEPS`]; past it, refused naming the field).
    pub fn page_of(
        &self,
        records: Vec<serde_json::Value>,
    ) -> Result<(Vec<serde_json::Value>, usize), BadCondition> {
        // The other conditions first: a `LIKE` is paid for only over what they keep.
        let others = RecordQuery {
            conds: self
                .conds
                .iter()
                .filter(|(_, op, _)| *op != Op::Like)
                .cloned()
                .collect(),
            page: self.page,
        };
        let records: Vec<_> = records.into_iter().filter(|r| others.keeps(r)).collect();
        let mut cost = 0usize;
        for (a, op, values) in &self.conds {
            if *op != Op::Like {
                continue;
            }
            // Plain text is looked for in one pass; a pattern with `%` or `_` costs
            // its length over every character.
            let pattern = match values[0].contains(['%', '_']) {
                true => values[0].chars().count(),
                false => 1,
            };
            for r in &records {
                let value = super::text(r, a).map_or(0, |v| v.chars().count());
                cost = cost.saturating_add(value.saturating_mul(pattern));
            }
            if cost > MAX_LIKE_STEPS {
                return Err(bad(
                    a,
                    format!(
                        "LIKE over these records would compare more than {MAX_LIKE_STEPS} characters: narrow them with other conditions, or a shorter pattern"
                    ),
                ));
            }
        }
        let kept: Vec<_> = records.into_iter().filter(|r| self.keeps(r)).collect();
        let cap = self.page.max_num_record_return.unwrap_or(usize::MAX);
        let total = kept.len().min(cap);
        let skip = self.page.record_start_no - 1;
        let take = self.page.page_record_num.min(total.saturating_sub(skip));
        Ok((kept.into_iter().skip(skip).take(take).collect(), total))
    }
}

/// Two values of attribute `a`: as times when it is one (`…Time`, either form), as
/// integers when both are, else as text.
fn compare(a: &str, have: &str, want: &str) -> std::cmp::Ordering {
    if a.ends_with("Time") {
        if let (Ok((h, _)), Ok((w, _))) = (time_of(a, have), time_of(a, want)) {
            return h.cmp(&w);
        }
    }
    match (have.parse::<i64>(), want.parse::<i64>()) {
        (Ok(h), Ok(w)) => h.cmp(&w),
        _ => have.cmp(want),
    }
}

/// The longest `LIKE` pattern a record condition takes, in characters.
pub const MAX_LIKE_CHARS: usize = 256;

/// The most character comparisons the `LIKE` conditions of one listing may need
/// (each costs its value's length times its pattern's), or it is refused.
pub const MAX_LIKE_STEPS: usize = 50_000_000;

/// SQL's `LIKE`: `%` any run, `_` any one character; a pattern with neither is
/// looked for anywhere in the value (as the platforms' fuzzy match reads it). Time
/// and memory proportional to the value's length times the pattern's.
fn like(have: &str, pattern: &str) -> bool {
    if !pattern.contains(['%', '_']) {
        return have.contains(pattern);
    }
    let p: Vec<char> = pattern.chars().collect();
    // matched[j]: the value so far matches the pattern's first j characters.
    let mut matched = vec![false; p.len() + 1];
    matched[0] = true;
    for j in 1..=p.len() {
        matched[j] = matched[j - 1] && p[j - 1] == '%';
    }
    for c in have.chars() {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                '%' => next[j - 1] || matched[j],
                '_' => matched[j - 1],
                q => matched[j - 1] && q == c,
            };
        }
        matched = next;
    }
    matched[p.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vehicles(q: &str) -> Result<(ObjectQuery, Page), BadCondition> {
        parse(Upload::Vehicles, "ArchiveID", Some(q))
    }

    const SEPT_1: i64 = 1_630_425_600_000; // 2021-09-01T00:00:00+08:00

    #[test]
    fn parentheses_nest_to_a_bound_not_to_the_stack() {
        let cond = "MotorVehicle.PlateNo%20=%20'苏E1'";
        let nested = |n: usize| format!("{}{cond}{}", "(".repeat(n), ")".repeat(n));
        assert!(vehicles(&nested(MAX_NESTING)).is_ok());
        let e = vehicles(&nested(MAX_NESTING + 1)).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
        // A query string of nothing but `(` (8 KiB) is refused, not a stack overflow.
        assert!(vehicles(&"(".repeat(8 << 10)).is_err());
    }

    #[test]
    fn the_standards_parenthesised_conditions_are_read() {
        let q = "RecordStartNo=3&PageRecordNum=2&(MotorVehicle.PassTime%20BETWEEN%20'2021-09-01%2000:00:00'%20and%20'20210902000000')&(Sort%20=%20MotorVehicle.PassTime%20DESC)&(MotorVehicle.PlateNo%20IN%20('苏E1','苏E2'))%20";
        let (o, p) = vehicles(q).unwrap();
        assert_eq!((o.from_ms, o.to_ms), (SEPT_1, SEPT_1 + 86_400_000 + 1000));
        assert!(o.newest_first);
        assert_eq!(
            o.subjects,
            Some(vec!["苏E1".to_string(), "苏E2".to_string()])
        );
        assert_eq!((o.skip, o.limit), (2, 2));
        assert_eq!(p.record_start_no, 3);
        let (o, _) =
            vehicles("((DeviceID = '32050801011210000001') AND (PlateColor = 2))").unwrap();
        assert_eq!(o.devices, Some(vec!["32050801011210000001".to_string()]));
        assert_eq!(
            o.attrs,
            vec![("plate_color".to_string(), vec!["2".to_string()])]
        );
    }

    #[test]
    fn plain_and_suffixed_pairs_are_read() {
        let (o, p) = vehicles("MotorVehicle.PassTime.Gte=20210901000000&MotorVehicle.PassTime.Lt=20210901080000&MotorVehicle.PassTime.Order=desc&PlateNo=%E8%8B%8FE12345&MaxNumRecordReturn=0").unwrap();
        assert_eq!((o.from_ms, o.to_ms), (SEPT_1, SEPT_1 + 8 * 3_600_000));
        assert!(o.newest_first);
        assert_eq!(o.subjects, Some(vec!["苏E12345".to_string()]));
        assert_eq!(p.max_num_record_return, None);
        assert_eq!(o.limit, DEFAULT_PAGE_RECORD_NUM);
        let (o, _) = parse(
            Upload::Faces,
            "ArchiveID",
            Some("FaceID=F1&Face.ShotTime=20210901000000"),
        )
        .unwrap();
        assert_eq!(
            o.attrs,
            vec![("source_id".to_string(), vec!["F1".to_string()])]
        );
        assert_eq!((o.from_ms, o.to_ms), (SEPT_1, SEPT_1 + 1000));
    }

    #[test]
    fn conditions_that_cannot_be_answered_are_refused_naming_the_field() {
        let field = |q: &str| vehicles(q).unwrap_err().field;
        assert_eq!(field("PageRecordNum=0"), "PageRecordNum");
        assert_eq!(field("PageRecordNum=5000"), "PageRecordNum");
        assert_eq!(field("RecordStartNo=x"), "RecordStartNo");
        assert_eq!(
            field("(MotorVehicle.PassTime > 'yesterday')"),
            "MotorVehicle.PassTime"
        );
        assert_eq!(field("(MotorVehicle.Speed > 60)"), "MotorVehicle.Speed");
        assert_eq!(field("Face.ShotTime=20210901000000"), "Face.ShotTime");
        assert_eq!(field("(PlateNo = 'a') OR (PlateNo = 'b')"), "OR");
        assert_eq!(field("(PlateNo LIKE '苏E%')"), "PlateNo");
        assert_eq!(field("(Sort = MotorVehicle.PlateNo)"), "Sort");
        assert_eq!(
            field("RecordStartNo=99999&PageRecordNum=1000"),
            "RecordStartNo"
        );
        assert_eq!(field("(PlateNo = 'a'"), "(");
    }

    #[test]
    fn like_reads_sql_wildcards_and_plain_text_anywhere() {
        assert!(like("卡口过车订阅", "过车"));
        assert!(!like("卡口过车订阅", "人脸"));
        assert!(like("abc", "a%") && like("abc", "%c") && like("abc", "a_c"));
        assert!(like("abc", "%") && like("", "%") && !like("", "_"));
        assert!(!like("abc", "a_") && !like("abc", "b%") && like("a%c", "a%c"));
        // Many wildcards stay proportional to value × pattern.
        let long = "a".repeat(200);
        assert!(!like(&long, &format!("{}b", "%a".repeat(100))));
    }

    #[test]
    fn record_conditions_keep_and_page_as_asked() {
        let rec = |id: &str, status: u8, begin: &str| serde_json::json!({"SubscribeID": id, "SubscribeStatus": status, "BeginTime": begin});
        let all = vec![
            rec("a", 0, "20210901000000"),
            rec("b", 1, "20210902000000"),
            rec("c", 0, "20210903000000"),
        ];
        let ids = |q: &str| {
            let q = records("Subscribe", SUBSCRIBE_ATTRIBUTES, Some(q)).unwrap();
            let (page, total) = q.page_of(all.clone()).unwrap();
            let ids: Vec<String> = page
                .iter()
                .map(|o| o["SubscribeID"].as_str().unwrap().to_string())
                .collect();
            (ids, total)
        };
        assert_eq!(ids(""), (vec!["a".into(), "b".into(), "c".into()], 3));
        assert_eq!(ids("SubscribeStatus=0").1, 2);
        assert_eq!(ids("SubscribeObject.SubscribeStatus.Neq=0").0, ["b"]);
        assert_eq!(ids("BeginTime.Gt=20210901000000").0, ["b", "c"]);
        assert_eq!(ids("(BeginTime < '2021-09-02 00:00:00')").0, ["a"]);
        assert_eq!(
            ids("RecordStartNo=3&PageRecordNum=5"),
            (vec!["c".into()], 3)
        );
        assert_eq!(ids("RecordStartNo=9"), (vec![], 3));
        assert_eq!(
            ids("MaxNumRecordReturn=2&RecordStartNo=2"),
            (vec!["b".into()], 2)
        );
        // A field of no record or of another object, a bad time, a long pattern.
        for q in [
            "PlateNo=1",
            "Face.SubscribeID=a",
            "BeginTime=yesterday",
            &format!("Title.Like={}", "x".repeat(MAX_LIKE_CHARS + 1)),
        ] {
            assert!(
                records("Subscribe", SUBSCRIBE_ATTRIBUTES, Some(q)).is_err(),
                "{q}"
            );
        }
        // LIKE over long values is refused before it runs, not run for minutes.
        let long = vec![serde_json::json!({"Title": "x".repeat(2_000_000)}); 10];
        let q = records(
            "Subscribe",
            SUBSCRIBE_ATTRIBUTES,
            Some("Title.Like=%25x%25y"),
        )
        .unwrap();
        let e = q.page_of(long).unwrap_err();
        assert!(e.to_string().contains("LIKE"), "{e}");
    }
}
