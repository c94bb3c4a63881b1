//! The functions HogQL may call: one explicit list with arities. Anything not here is refused,
//! which keeps out what reads files, the network, other tables, dictionaries, settings or the
//! server (`file`, `url`, `remote*`, `cluster*`, `s3*`, `hdfs`, `jdbc`, `mysql`, `postgresql`,
//! `input`, `dictGet*`, `joinGet`, `getSetting`, `hostName`, `currentDatabase`, …).
//!
//! To add one: check that it is pure (reads only its arguments), that it exists on ClickHouse
//! 18.16 and 26.x or is marked modern-only here, then add a line and a test case.

/// What kind of function it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain function.
    Plain,
    /// An aggregate: also callable with the `If` combinator (`countIf(x, cond)`, one more argument).
    Aggregate,
    /// An aggregate that takes parameters: `quantile(0.9)(x)`.
    Parametric,
}

/// A function HogQL may call.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// Its name, as printed.
    pub name: &'static str,
    /// Fewest arguments.
    pub min: usize,
    /// Most arguments.
    pub max: usize,
    /// Plain, aggregate or parametric aggregate.
    pub kind: Kind,
}

const fn f(name: &'static str, min: usize, max: usize) -> Function {
    Function { name, min, max, kind: Kind::Plain }
}
const fn agg(name: &'static str, min: usize, max: usize) -> Function {
    Function { name, min, max, kind: Kind::Aggregate }
}
const fn par(name: &'static str, min: usize, max: usize) -> Function {
    Function { name, min, max, kind: Kind::Parametric }
}

const MANY: usize = 1000;

/// The allowlist.
pub const FUNCTIONS: &[Function] = &[
    // Aggregates.
    agg("count", 0, 1),
    agg("sum", 1, 1),
    agg("avg", 1, 1),
    agg("min", 1, 1),
    agg("max", 1, 1),
    agg("any", 1, 1),
    agg("anyLast", 1, 1),
    agg("argMin", 2, 2),
    agg("argMax", 2, 2),
    agg("uniq", 1, MANY),
    agg("uniqExact", 1, MANY),
    agg("uniqHLL12", 1, MANY),
    agg("uniqCombined", 1, MANY),
    agg("groupArray", 1, 1),
    agg("groupUniqArray", 1, 1),
    agg("median", 1, 1),
    agg("stddevPop", 1, 1),
    agg("stddevSamp", 1, 1),
    agg("varPop", 1, 1),
    agg("varSamp", 1, 1),
    agg("covarPop", 2, 2),
    agg("covarSamp", 2, 2),
    agg("corr", 2, 2),
    agg("groupBitAnd", 1, 1),
    agg("groupBitOr", 1, 1),
    agg("groupBitXor", 1, 1),
    agg("sumMap", 2, 2),
    par("quantile", 1, 1),
    par("quantiles", 1, 1),
    par("quantileExact", 1, 1),
    par("quantilesExact", 1, 1),
    par("quantileTiming", 1, 1),
    par("topK", 1, 1),
    par("groupArraySample", 1, 1),
    par("histogram", 1, 1),
    par("windowFunnel", 2, 64),
    par("retention", 1, 32),
    par("sequenceMatch", 3, 34),
    par("sequenceCount", 3, 34),
    // Arithmetic and comparison.
    f("plus", 2, 2),
    f("minus", 2, 2),
    f("multiply", 2, 2),
    f("divide", 2, 2),
    f("intDiv", 2, 2),
    f("intDivOrZero", 2, 2),
    f("modulo", 2, 2),
    f("negate", 1, 1),
    f("abs", 1, 1),
    f("gcd", 2, 2),
    f("lcm", 2, 2),
    f("equals", 2, 2),
    f("notEquals", 2, 2),
    f("less", 2, 2),
    f("greater", 2, 2),
    f("lessOrEquals", 2, 2),
    f("greaterOrEquals", 2, 2),
    f("and", 2, MANY),
    f("or", 2, MANY),
    f("xor", 2, MANY),
    f("not", 1, 1),
    f("greatest", 2, MANY),
    f("least", 2, MANY),
    f("bitAnd", 2, 2),
    f("bitOr", 2, 2),
    f("bitXor", 2, 2),
    f("bitNot", 1, 1),
    f("bitShiftLeft", 2, 2),
    f("bitShiftRight", 2, 2),
    // Conditionals and NULLs.
    f("if", 3, 3),
    f("multiIf", 3, MANY),
    f("ifNull", 2, 2),
    f("nullIf", 2, 2),
    f("coalesce", 1, MANY),
    f("assumeNotNull", 1, 1),
    f("toNullable", 1, 1),
    f("isNull", 1, 1),
    f("isNotNull", 1, 1),
    f("isFinite", 1, 1),
    f("isInfinite", 1, 1),
    f("isNaN", 1, 1),
    f("transform", 3, 4),
    // Math.
    f("exp", 1, 1),
    f("exp2", 1, 1),
    f("exp10", 1, 1),
    f("log", 1, 1),
    f("ln", 1, 1),
    f("log2", 1, 1),
    f("log10", 1, 1),
    f("sqrt", 1, 1),
    f("cbrt", 1, 1),
    f("pow", 2, 2),
    f("power", 2, 2),
    f("round", 1, 2),
    f("floor", 1, 2),
    f("ceil", 1, 2),
    f("trunc", 1, 2),
    f("sin", 1, 1),
    f("cos", 1, 1),
    f("tan", 1, 1),
    f("pi", 0, 0),
    f("e", 0, 0),
    f("rand", 0, 1),
    f("rand64", 0, 1),
    f("generateUUIDv4", 0, 0),
    // Type conversion.
    f("toString", 1, 2),
    f("toInt8", 1, 1),
    f("toInt16", 1, 1),
    f("toInt32", 1, 1),
    f("toInt64", 1, 1),
    f("toUInt8", 1, 1),
    f("toUInt16", 1, 1),
    f("toUInt32", 1, 1),
    f("toUInt64", 1, 1),
    f("toFloat32", 1, 1),
    f("toFloat64", 1, 1),
    f("toInt64OrNull", 1, 1),
    f("toInt64OrZero", 1, 1),
    f("toUInt64OrNull", 1, 1),
    f("toUInt64OrZero", 1, 1),
    f("toFloat64OrNull", 1, 1),
    f("toFloat64OrZero", 1, 1),
    f("toDecimal32", 2, 2),
    f("toDecimal64", 2, 2),
    f("toDate", 1, 2),
    f("toDateOrNull", 1, 1),
    f("toDateTime", 1, 2),
    f("toDateTimeOrNull", 1, 1),
    f("toDateTime64", 2, 3),
    f("toUUID", 1, 1),
    f("toTypeName", 1, 1),
    f("reinterpretAsString", 1, 1),
    f("toFixedString", 2, 2),
    // Dates and times.
    f("now", 0, 1),
    f("today", 0, 0),
    f("yesterday", 0, 0),
    f("toYear", 1, 2),
    f("toQuarter", 1, 2),
    f("toMonth", 1, 2),
    f("toDayOfYear", 1, 2),
    f("toDayOfMonth", 1, 2),
    f("toDayOfWeek", 1, 3),
    f("toHour", 1, 2),
    f("toMinute", 1, 2),
    f("toSecond", 1, 2),
    f("toISOWeek", 1, 2),
    f("toISOYear", 1, 2),
    f("toWeek", 1, 3),
    f("toMonday", 1, 2),
    f("toStartOfYear", 1, 2),
    f("toStartOfQuarter", 1, 2),
    f("toStartOfMonth", 1, 2),
    f("toStartOfWeek", 1, 3),
    f("toStartOfDay", 1, 2),
    f("toStartOfHour", 1, 2),
    f("toStartOfMinute", 1, 2),
    f("toStartOfFiveMinute", 1, 2),
    f("toStartOfFifteenMinutes", 1, 2),
    f("toStartOfInterval", 2, 3),
    f("toTime", 1, 2),
    f("toYYYYMM", 1, 2),
    f("toYYYYMMDD", 1, 2),
    f("toYYYYMMDDhhmmss", 1, 2),
    f("toUnixTimestamp", 1, 2),
    f("toTimeZone", 2, 2),
    f("toRelativeYearNum", 1, 2),
    f("toRelativeMonthNum", 1, 2),
    f("toRelativeWeekNum", 1, 2),
    f("toRelativeDayNum", 1, 2),
    f("toRelativeHourNum", 1, 2),
    f("toRelativeMinuteNum", 1, 2),
    f("toRelativeSecondNum", 1, 2),
    f("dateDiff", 3, 4),
    f("addSeconds", 2, 2),
    f("addMinutes", 2, 2),
    f("addHours", 2, 2),
    f("addDays", 2, 2),
    f("addWeeks", 2, 2),
    f("addMonths", 2, 2),
    f("addQuarters", 2, 2),
    f("addYears", 2, 2),
    f("subtractSeconds", 2, 2),
    f("subtractMinutes", 2, 2),
    f("subtractHours", 2, 2),
    f("subtractDays", 2, 2),
    f("subtractWeeks", 2, 2),
    f("subtractMonths", 2, 2),
    f("subtractQuarters", 2, 2),
    f("subtractYears", 2, 2),
    f("toIntervalSecond", 1, 1),
    f("toIntervalMinute", 1, 1),
    f("toIntervalHour", 1, 1),
    f("toIntervalDay", 1, 1),
    f("toIntervalWeek", 1, 1),
    f("toIntervalMonth", 1, 1),
    f("toIntervalQuarter", 1, 1),
    f("toIntervalYear", 1, 1),
    f("formatDateTime", 2, 3),
    f("parseDateTimeBestEffort", 1, 2),
    f("parseDateTimeBestEffortOrNull", 1, 2),
    f("parseDateTimeBestEffortOrZero", 1, 2),
    f("timeSlot", 1, 1),
    // Strings.
    f("length", 1, 1),
    f("lengthUTF8", 1, 1),
    f("empty", 1, 1),
    f("notEmpty", 1, 1),
    f("lower", 1, 1),
    f("upper", 1, 1),
    f("lowerUTF8", 1, 1),
    f("upperUTF8", 1, 1),
    f("reverse", 1, 1),
    f("reverseUTF8", 1, 1),
    f("concat", 1, MANY),
    f("substring", 2, 3),
    f("substringUTF8", 2, 3),
    f("appendTrailingCharIfAbsent", 2, 2),
    f("trimLeft", 1, 1),
    f("trimRight", 1, 1),
    f("trimBoth", 1, 1),
    f("position", 2, 2),
    f("positionUTF8", 2, 2),
    f("positionCaseInsensitive", 2, 2),
    f("positionCaseInsensitiveUTF8", 2, 2),
    f("startsWith", 2, 2),
    f("endsWith", 2, 2),
    f("match", 2, 2),
    f("extract", 2, 2),
    f("extractAll", 2, 2),
    f("like", 2, 2),
    f("notLike", 2, 2),
    f("replaceOne", 3, 3),
    f("replaceAll", 3, 3),
    f("replaceRegexpOne", 3, 3),
    f("replaceRegexpAll", 3, 3),
    f("splitByChar", 2, 2),
    f("splitByString", 2, 2),
    f("arrayStringConcat", 1, 2),
    f("alphaTokens", 1, 1),
    f("base64Encode", 1, 1),
    f("base64Decode", 1, 1),
    f("hex", 1, 1),
    f("unhex", 1, 1),
    f("toValidUTF8", 1, 1),
    f("format", 1, MANY),
    f("leftPad", 2, 3),
    f("rightPad", 2, 3),
    f("repeat", 2, 2),
    f("domain", 1, 1),
    f("domainWithoutWWW", 1, 1),
    f("topLevelDomain", 1, 1),
    f("protocol", 1, 1),
    f("path", 1, 1),
    f("pathFull", 1, 1),
    f("queryString", 1, 1),
    f("fragment", 1, 1),
    f("cutQueryString", 1, 1),
    f("cutFragment", 1, 1),
    f("cutWWW", 1, 1),
    f("extractURLParameter", 2, 2),
    f("extractURLParameters", 1, 1),
    f("extractURLParameterNames", 1, 1),
    f("decodeURLComponent", 1, 1),
    f("encodeURLComponent", 1, 1),
    // Arrays and tuples.
    f("array", 0, MANY),
    f("tuple", 1, MANY),
    f("tupleElement", 2, 2),
    f("has", 2, 2),
    f("hasAll", 2, 2),
    f("hasAny", 2, 2),
    f("indexOf", 2, 2),
    f("countEqual", 2, 2),
    f("arrayConcat", 1, MANY),
    f("arraySlice", 2, 3),
    f("arrayElement", 2, 2),
    f("arrayMap", 2, MANY),
    f("arrayFilter", 2, MANY),
    f("arrayExists", 1, MANY),
    f("arrayAll", 1, MANY),
    f("arrayCount", 1, MANY),
    f("arraySum", 1, MANY),
    f("arrayFirst", 2, MANY),
    f("arrayFirstIndex", 2, MANY),
    f("arraySort", 1, MANY),
    f("arrayReverseSort", 1, MANY),
    f("arrayReverse", 1, 1),
    f("arrayDistinct", 1, 1),
    f("arrayUniq", 1, MANY),
    f("arrayJoin", 1, 1),
    f("arrayEnumerate", 1, 1),
    f("arrayEnumerateUniq", 1, MANY),
    f("arrayPushBack", 2, 2),
    f("arrayPushFront", 2, 2),
    f("arrayPopBack", 1, 1),
    f("arrayPopFront", 1, 1),
    f("arrayResize", 2, 3),
    f("arrayIntersect", 1, MANY),
    f("arrayReduce", 2, MANY),
    f("arrayCumSum", 1, MANY),
    f("arrayDifference", 1, 1),
    f("range", 1, 3),
    f("emptyArrayString", 0, 0),
    f("emptyArrayUInt64", 0, 0),
    // JSON (JSONExtract* are ClickHouse 20+; visitParam* work everywhere).
    f("JSONHas", 1, MANY),
    f("JSONLength", 1, MANY),
    f("JSONType", 1, MANY),
    f("JSONExtract", 2, MANY),
    f("JSONExtractString", 1, MANY),
    f("JSONExtractInt", 1, MANY),
    f("JSONExtractUInt", 1, MANY),
    f("JSONExtractFloat", 1, MANY),
    f("JSONExtractBool", 1, MANY),
    f("JSONExtractRaw", 1, MANY),
    f("JSONExtractKeys", 1, MANY),
    f("JSONExtractArrayRaw", 1, MANY),
    f("JSONExtractKeysAndValues", 2, MANY),
    f("visitParamHas", 2, 2),
    f("visitParamExtractString", 2, 2),
    f("visitParamExtractRaw", 2, 2),
    f("visitParamExtractInt", 2, 2),
    f("visitParamExtractUInt", 2, 2),
    f("visitParamExtractFloat", 2, 2),
    f("visitParamExtractBool", 2, 2),
    // Hashing.
    f("cityHash64", 1, MANY),
    f("sipHash64", 1, MANY),
    f("halfMD5", 1, MANY),
    f("MD5", 1, 1),
    f("SHA1", 1, 1),
    f("SHA224", 1, 1),
    f("SHA256", 1, 1),
    f("xxHash32", 1, MANY),
    f("xxHash64", 1, MANY),
    f("murmurHash2_32", 1, MANY),
    f("murmurHash2_64", 1, MANY),
    f("murmurHash3_32", 1, MANY),
    f("murmurHash3_64", 1, MANY),
    f("farmHash64", 1, MANY),
    f("intHash32", 1, 1),
    f("intHash64", 1, 1),
];

/// The function called `name`, with the `If` combinator resolved: `(function, name as printed,
/// whether it is the If form)`. Exact spelling first, then any case (printed canonically).
pub fn lookup(name: &str) -> Option<(&'static Function, String, bool)> {
    let find = |n: &str| {
        FUNCTIONS.iter().find(|f| f.name == n).or_else(|| FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(n)))
    };
    if let Some(func) = find(name) {
        return Some((func, func.name.to_string(), false));
    }
    let base = name.strip_suffix("If")?;
    let func = find(base).filter(|f| f.kind != Kind::Plain)?;
    Some((func, format!("{}If", func.name), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_nothing_dangerous_is_listed() {
        let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate names");
        for bad in [
            "file", "url", "remote", "remoteSecure", "cluster", "clusterAllReplicas", "s3", "s3Cluster", "hdfs", "jdbc",
            "mysql", "postgresql", "input", "dictGet", "dictGetString", "joinGet", "getSetting", "hostName",
            "currentDatabase", "currentUser", "version", "uptime", "sleep", "sleepEachRow", "hasColumnInTable",
            "in", "notIn", "globalIn", "numbers", "throwIf", "getMacro", "filesystemAvailable", "tcpPort",
        ] {
            assert!(lookup(bad).is_none(), "{bad} must not be callable");
        }
    }

    #[test]
    fn if_combinator_and_case() {
        let (f, name, is_if) = lookup("countIf").unwrap();
        assert_eq!((f.name, name.as_str(), is_if), ("count", "countIf", true));
        assert_eq!(lookup("COUNT").unwrap().1, "count");
        assert_eq!(lookup("quantileIf").unwrap().1, "quantileIf");
        assert!(lookup("lowerIf").is_none(), "If only combines with aggregates");
    }
}
