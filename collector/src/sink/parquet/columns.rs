//! Rows into columns: a serde serializer that takes each field of a flat row ([`EventRow`]) in
//! turn and appends it to the column of the same name, with the definition and repetition
//! levels Parquet needs for optional values and lists. The schema decides each column's type;
//! the row only has to fit it, so the row's field order and the schema are checked against each
//! other on every row.
//!
//! [`EventRow`]: crate::sink::row::EventRow

use parquet::basic::Type as Physical;
use parquet::data_type::ByteArray;
use parquet::schema::types::SchemaDescriptor;
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// Why a row does not fit the schema (a programming error: the row and schema disagree).
#[derive(Debug, thiserror::Error)]
#[error("row does not fit the Parquet schema: {0}")]
pub struct FitError(String);

impl ser::Error for FitError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FitError(msg.to_string())
    }
}

/// The values of one leaf column, in its physical type.
pub enum Values {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

/// One leaf column being filled.
pub struct Column {
    pub name: String,
    pub values: Values,
    /// Definition levels (empty for a required, unrepeated column).
    pub def: Vec<i16>,
    /// Repetition levels (empty unless the column is a list).
    pub rep: Vec<i16>,
    optional: bool,
    list: bool,
}

impl Column {
    fn clear(&mut self) {
        match &mut self.values {
            Values::Bool(v) => v.clear(),
            Values::Int32(v) => v.clear(),
            Values::Int64(v) => v.clear(),
            Values::Float(v) => v.clear(),
            Values::Double(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
        }
        self.def.clear();
        self.rep.clear();
    }
}

/// The columns of a row group being gathered.
pub struct Columns {
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Columns {
    /// Empty columns for every leaf of `schema`: required or optional primitives, and lists of
    /// required primitives (`required group x (LIST) { repeated group list { required ... } }`).
    pub fn new(schema: &SchemaDescriptor) -> Columns {
        let columns = schema
            .columns()
            .iter()
            .map(|c| {
                let values = match c.physical_type() {
                    Physical::BOOLEAN => Values::Bool(Vec::new()),
                    Physical::INT32 => Values::Int32(Vec::new()),
                    Physical::INT64 => Values::Int64(Vec::new()),
                    Physical::FLOAT => Values::Float(Vec::new()),
                    Physical::DOUBLE => Values::Double(Vec::new()),
                    _ => Values::Bytes(Vec::new()),
                };
                let list = c.max_rep_level() > 0;
                Column { name: c.path().parts()[0].clone(), values, def: Vec::new(), rep: Vec::new(), optional: !list && c.max_def_level() > 0, list }
            })
            .collect();
        Columns { columns, rows: 0 }
    }

    /// Appends one row. On error the columns are left inconsistent: [`clear`](Self::clear) them.
    pub fn push<R: Serialize>(&mut self, row: &R) -> Result<(), FitError> {
        row.serialize(RowSer { cols: self, next: 0 })?;
        self.rows += 1;
        Ok(())
    }

    /// Empties every column, keeping the allocations.
    pub fn clear(&mut self) {
        self.columns.iter_mut().for_each(Column::clear);
        self.rows = 0;
    }
}

/// Serializes a row: a struct whose fields are the columns in order.
struct RowSer<'c> {
    cols: &'c mut Columns,
    next: usize,
}

fn unsupported<T>(what: &str) -> Result<T, FitError> {
    Err(FitError(format!("a row must be a struct of columns, not {what}")))
}

macro_rules! not_a_row {
    ($($m:ident: $t:ty),*) => {$(
        fn $m(self, _: $t) -> Result<(), FitError> { unsupported(stringify!($t)) }
    )*};
}

impl<'c> ser::Serializer for RowSer<'c> {
    type Ok = ();
    type Error = FitError;
    type SerializeSeq = Impossible<(), FitError>;
    type SerializeTuple = Impossible<(), FitError>;
    type SerializeTupleStruct = Impossible<(), FitError>;
    type SerializeTupleVariant = Impossible<(), FitError>;
    type SerializeMap = Impossible<(), FitError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), FitError>;

    not_a_row!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_f32: f32,
        serialize_f64: f64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_none(self) -> Result<(), FitError> {
        unsupported("none")
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), FitError> {
        unsupported("an option")
    }
    fn serialize_unit(self) -> Result<(), FitError> {
        unsupported("unit")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), FitError> {
        unsupported("unit")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), FitError> {
        unsupported("an enum")
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<(), FitError> {
        unsupported("a newtype")
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<(), FitError> {
        unsupported("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, FitError> {
        unsupported("a sequence")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, FitError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, FitError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, FitError> {
        unsupported("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, FitError> {
        unsupported("a map")
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self, FitError> {
        if len != self.cols.columns.len() {
            return Err(FitError(format!("the row has {len} fields, the schema {} columns", self.cols.columns.len())));
        }
        Ok(self)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, FitError> {
        unsupported("an enum")
    }
}

impl ser::SerializeStruct for RowSer<'_> {
    type Ok = ();
    type Error = FitError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), FitError> {
        let col = self.cols.columns.get_mut(self.next).ok_or_else(|| FitError(format!("field `{key}` has no column")))?;
        if col.name != key {
            return Err(FitError(format!("field `{key}` meets column `{}`", col.name)));
        }
        self.next += 1;
        value.serialize(ValueSer { col, element: None })
    }

    fn end(self) -> Result<(), FitError> {
        Ok(())
    }
}

/// Serializes one field's value into its column.
struct ValueSer<'c> {
    col: &'c mut Column,
    /// For a list element: whether it starts the row's list (repetition level 0). `None` for
    /// the field itself.
    element: Option<bool>,
}

/// A number or flag on its way into a column of whatever physical type the schema gave it.
#[derive(Clone, Copy)]
enum Scalar {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl ValueSer<'_> {
    /// Appends a present value (with its levels).
    fn present(self, push: impl FnOnce(&mut Values) -> Result<(), FitError>) -> Result<(), FitError> {
        let col = self.col;
        match (col.list, self.element) {
            (true, None) => return Err(FitError(format!("column `{}` is a list but the value is not", col.name))),
            (false, Some(_)) => return Err(FitError(format!("column `{}` is not a list but the value is", col.name))),
            _ => {}
        }
        push(&mut col.values).map_err(|e| FitError(format!("column `{}`: {}", col.name, e.0)))?;
        if let Some(first) = self.element {
            col.def.push(1);
            col.rep.push(if first { 0 } else { 1 });
        } else if col.optional {
            col.def.push(1);
        }
        Ok(())
    }

    fn scalar(self, v: Scalar) -> Result<(), FitError> {
        self.present(|values| {
            match (values, v) {
                (Values::Bool(out), Scalar::Bool(b)) => out.push(b),
                (Values::Bool(out), Scalar::Unsigned(n)) => out.push(n != 0),
                // Unsigned columns keep the bits (INTEGER(32,false) is stored as int32).
                (Values::Int32(out), Scalar::Unsigned(n)) if n <= u64::from(u32::MAX) => out.push(n as u32 as i32),
                (Values::Int32(out), Scalar::Signed(n)) if i32::try_from(n).is_ok() => out.push(n as i32),
                (Values::Int64(out), Scalar::Unsigned(n)) => out.push(n as i64),
                (Values::Int64(out), Scalar::Signed(n)) => out.push(n),
                (Values::Float(out), Scalar::Float(f)) => out.push(f as f32),
                (Values::Double(out), Scalar::Float(f)) => out.push(f),
                _ => return Err(FitError("value of another type".into())),
            }
            Ok(())
        })
    }
}

impl<'c> ser::Serializer for ValueSer<'c> {
    type Ok = ();
    type Error = FitError;
    type SerializeSeq = ListSer<'c>;
    type SerializeTuple = Impossible<(), FitError>;
    type SerializeTupleStruct = Impossible<(), FitError>;
    type SerializeTupleVariant = Impossible<(), FitError>;
    type SerializeMap = Impossible<(), FitError>;
    type SerializeStruct = Impossible<(), FitError>;
    type SerializeStructVariant = Impossible<(), FitError>;

    fn serialize_bool(self, v: bool) -> Result<(), FitError> {
        self.scalar(Scalar::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), FitError> {
        self.scalar(Scalar::Signed(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<(), FitError> {
        self.scalar(Scalar::Signed(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<(), FitError> {
        self.scalar(Scalar::Signed(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<(), FitError> {
        self.scalar(Scalar::Signed(v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), FitError> {
        self.scalar(Scalar::Unsigned(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<(), FitError> {
        self.scalar(Scalar::Unsigned(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<(), FitError> {
        self.scalar(Scalar::Unsigned(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<(), FitError> {
        self.scalar(Scalar::Unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<(), FitError> {
        self.scalar(Scalar::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), FitError> {
        self.scalar(Scalar::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<(), FitError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), FitError> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), FitError> {
        self.present(|values| match values {
            Values::Bytes(out) => {
                out.push(ByteArray::from(v));
                Ok(())
            }
            _ => Err(FitError("text in a non-text column".into())),
        })
    }
    fn serialize_none(self) -> Result<(), FitError> {
        if !self.col.optional || self.element.is_some() {
            return Err(FitError(format!("column `{}` is required but the value is absent", self.col.name)));
        }
        self.col.def.push(0);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), FitError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), FitError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), FitError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, name: &'static str) -> Result<(), FitError> {
        self.serialize_str(name)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result<(), FitError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<(), FitError> {
        Err(FitError(format!("column `{}`: enums with data do not fit a column", self.col.name)))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<ListSer<'c>, FitError> {
        if !self.col.list || self.element.is_some() {
            return Err(FitError(format!("column `{}` is not a list of values", self.col.name)));
        }
        Ok(ListSer { col: self.col, count: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, FitError> {
        Err(FitError(format!("column `{}`: tuples do not fit a column", self.col.name)))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, FitError> {
        Err(FitError(format!("column `{}`: tuples do not fit a column", self.col.name)))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, FitError> {
        Err(FitError(format!("column `{}`: enums with data do not fit a column", self.col.name)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, FitError> {
        Err(FitError(format!("column `{}`: maps do not fit a column", self.col.name)))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, FitError> {
        Err(FitError(format!("column `{}`: nested structs do not fit a flat column", self.col.name)))
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, FitError> {
        Err(FitError(format!("column `{}`: enums with data do not fit a column", self.col.name)))
    }
}

/// The elements of one row's list.
struct ListSer<'c> {
    col: &'c mut Column,
    count: usize,
}

impl ser::SerializeSeq for ListSer<'_> {
    type Ok = ();
    type Error = FitError;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), FitError> {
        let first = self.count == 0;
        self.count += 1;
        v.serialize(ValueSer { col: self.col, element: Some(first) })
    }

    fn end(self) -> Result<(), FitError> {
        if self.count == 0 {
            // An empty list: defined up to the list itself, no value.
            self.col.def.push(0);
            self.col.rep.push(0);
        }
        Ok(())
    }
}
