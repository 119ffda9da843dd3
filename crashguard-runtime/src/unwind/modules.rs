//! The ELF objects mapped into the process (the executable, shared libraries, the vDSO), read
//! once at install with `dl_iterate_phdr`: where each lies, its build id, and where its unwind
//! tables are in memory.

use std::ffi::{c_int, c_void, CStr};
use std::ops::Range;

use framehop::{ExplicitModuleSectionInfo, Module as UnwindModule};

/// An ELF object mapped into the process.
pub(crate) struct Module {
    /// The address its ELF virtual addresses are relative to.
    pub(crate) base: usize,
    /// Where its loaded segments lie.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) path: String,
    pub(crate) build_id: Vec<u8>,
    /// The program itself, whose symbol table crashguard reads for function names.
    pub(crate) is_executable: bool,
    /// Its readable loaded segments.
    readable: Vec<Range<usize>>,
    unwind_tables: Option<UnwindTables>,
}

type Section = gimli::EndianSlice<'static, gimli::NativeEndian>;

/// `.eh_frame_hdr` and `.eh_frame` as they are mapped, with their ELF virtual addresses.
struct UnwindTables {
    eh_frame_hdr: &'static [u8],
    eh_frame_hdr_vaddr: u64,
    eh_frame: &'static [u8],
    eh_frame_vaddr: u64,
    text_vaddr: Option<Range<u64>>,
    /// The header's search table, to tell which addresses the tables cover.
    search: gimli::ParsedEhFrameHdr<Section>,
    /// Where the sections are mapped, for the pointers inside them.
    bases: gimli::BaseAddresses,
}

impl Module {
    /// The file name, as frames show it (`app+0x1f3a2`).
    pub(crate) fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    pub(crate) fn contains(&self, address: usize) -> bool {
        (self.start..self.end).contains(&address)
    }

    /// Whether the unwind tables describe the function at `address`. Allocates nothing.
    pub(super) fn has_unwind_info(&self, address: u64) -> bool {
        let Some(tables) = &self.unwind_tables else {
            return false;
        };
        let Some(table) = tables.search.table() else {
            return false;
        };
        let eh_frame = gimli::EhFrame::from(Section::new(tables.eh_frame, gimli::NativeEndian));
        table
            .fde_for_address(
                &eh_frame,
                &tables.bases,
                address,
                gimli::UnwindSection::cie_from_offset,
            )
            .is_ok()
    }

    /// The 8 bytes at `address`, if they lie in one of the module's readable segments.
    pub(super) fn read_word(&self, address: u64) -> Option<u64> {
        let start = usize::try_from(address).ok()?;
        let end = start.checked_add(8)?;
        self.readable
            .iter()
            .any(|segment| segment.start <= start && end <= segment.end)
            // SAFETY: the word lies inside a readable segment, mapped while the module is
            // loaded.
            .then(|| unsafe { std::ptr::read_unaligned(start as *const u64) })
    }

    /// The code `length` bytes before `address`, if they lie in the module's executable
    /// segment.
    pub(super) fn code_before(&self, address: u64, length: usize) -> Option<&'static [u8]> {
        let text = self.unwind_tables.as_ref()?.text_vaddr.as_ref()?;
        let base = self.base as u64;
        let start = address.checked_sub(length as u64)?;
        if start < base + text.start || address > base + text.end {
            return None;
        }
        // SAFETY: the range lies inside the module's executable segment, which is mapped
        // readable while the module is loaded.
        Some(unsafe { std::slice::from_raw_parts(start as *const u8, length) })
    }

    /// The module as framehop's unwinder takes it, if it has unwind tables.
    pub(super) fn unwind_module(&self) -> Option<UnwindModule<&'static [u8]>> {
        let tables = self.unwind_tables.as_ref()?;
        let range = |vaddr: u64, bytes: &[u8]| vaddr..vaddr + bytes.len() as u64;
        let sections = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: tables.text_vaddr.clone(),
            eh_frame_svma: Some(range(tables.eh_frame_vaddr, tables.eh_frame)),
            eh_frame: Some(tables.eh_frame),
            eh_frame_hdr_svma: Some(range(tables.eh_frame_hdr_vaddr, tables.eh_frame_hdr)),
            eh_frame_hdr: Some(tables.eh_frame_hdr),
            ..ExplicitModuleSectionInfo::default()
        };
        Some(UnwindModule::new(
            self.path.clone(),
            self.start as u64..self.end as u64,
            self.base as u64,
            sections,
        ))
    }
}

/// The executable and shared libraries mapped now, with their build ids.
pub(super) fn loaded() -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `collect_module` with a valid dl_phdr_info for each loaded
    // object and passes `data` through; `data` is `modules`, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect_module),
            (&mut modules as *mut Vec<Module>).cast(),
        );
    }
    modules.sort_by_key(|module| module.start);
    modules
}

/// Adds the object `info` describes to the `Vec<Module>` behind `data`.
///
/// # Safety
///
/// `info` is a valid `dl_phdr_info`, as `dl_iterate_phdr` passes it, and `data` points at a
/// `Vec<Module>` no one else uses during the call.
unsafe extern "C" fn collect_module(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the caller vouches for both pointers.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let base = info.dlpi_addr as usize;
    let headers = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let mut start = usize::MAX;
    let mut end = 0;
    let mut build_id = Vec::new();
    let mut readable = Vec::new();
    for header in headers {
        let segment = base + header.p_vaddr as usize;
        if header.p_type == libc::PT_LOAD {
            start = start.min(segment);
            end = end.max(segment + header.p_memsz as usize);
            if header.p_flags & libc::PF_R != 0 {
                readable.push(segment..segment + header.p_memsz as usize);
            }
        } else if header.p_type == libc::PT_NOTE && build_id.is_empty() {
            // SAFETY: a PT_NOTE segment of a loaded object is mapped and p_memsz long.
            let notes = unsafe {
                std::slice::from_raw_parts(segment as *const u8, header.p_memsz as usize)
            };
            build_id = gnu_build_id(notes).map(<[u8]>::to_vec).unwrap_or_default();
        }
    }
    if start >= end {
        return 0;
    }
    let name = if info.dlpi_name.is_null() {
        c""
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string (empty for the executable).
        unsafe { CStr::from_ptr(info.dlpi_name) }
    };
    // glibc names the executable "", musl's static dl_iterate_phdr "/proc/self/exe".
    let is_executable = name.is_empty() || name == c"/proc/self/exe";
    let path = if is_executable {
        std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| "<executable>".to_owned())
    } else {
        name.to_string_lossy().into_owned()
    };
    modules.push(Module {
        base,
        start,
        end,
        path,
        build_id,
        is_executable,
        readable,
        unwind_tables: unwind_tables(base, headers),
    });
    0
}

/// Finds `.eh_frame_hdr` through its program header (PT_GNU_EH_FRAME), and `.eh_frame` through
/// the pointer the header holds; `.eh_frame` is taken to the end of the segment it lies in.
fn unwind_tables(base: usize, headers: &[libc::Elf64_Phdr]) -> Option<UnwindTables> {
    let header = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME)?;
    let hdr_address = base as u64 + header.p_vaddr;
    // SAFETY: the PT_GNU_EH_FRAME segment of a loaded object is mapped, readable, p_memsz long,
    // and stays mapped while the object is loaded.
    let eh_frame_hdr: &'static [u8] =
        unsafe { std::slice::from_raw_parts(hdr_address as *const u8, header.p_memsz as usize) };
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(hdr_address);
    let parsed = gimli::EhFrameHdr::new(eh_frame_hdr, gimli::NativeEndian)
        .parse(&bases, std::mem::size_of::<usize>() as u8)
        .ok()?;
    let gimli::Pointer::Direct(eh_frame_address) = parsed.eh_frame_ptr() else {
        return None;
    };
    let eh_frame_vaddr = eh_frame_address.checked_sub(base as u64)?;
    let segment = headers.iter().find(|h| {
        h.p_type == libc::PT_LOAD && (h.p_vaddr..h.p_vaddr + h.p_memsz).contains(&eh_frame_vaddr)
    })?;
    let length = segment.p_vaddr + segment.p_memsz - eh_frame_vaddr;
    // SAFETY: `.eh_frame` lies inside that loaded segment, which is mapped to its end.
    let eh_frame: &'static [u8] =
        unsafe { std::slice::from_raw_parts(eh_frame_address as *const u8, length as usize) };
    let text_vaddr = headers
        .iter()
        .find(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
        .map(|h| h.p_vaddr..h.p_vaddr + h.p_memsz);
    let text_address = text_vaddr
        .as_ref()
        .map_or(0, |text| base as u64 + text.start);
    Some(UnwindTables {
        eh_frame_hdr,
        eh_frame_hdr_vaddr: header.p_vaddr,
        eh_frame,
        eh_frame_vaddr,
        text_vaddr,
        search: parsed,
        bases: bases.set_eh_frame(eh_frame_address).set_text(text_address),
    })
}

/// The `NT_GNU_BUILD_ID` note's bytes in a PT_NOTE segment.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |bytes: &[u8]| u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let align = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (name_size, desc_size, kind) = (word(notes), word(&notes[4..]), word(&notes[8..]));
        let name_end = 12 + align(name_size);
        let desc_end = name_end + align(desc_size);
        if desc_end > notes.len() {
            return None;
        }
        if kind as u32 == NT_GNU_BUILD_ID && &notes[12..12 + name_size] == b"GNU\0" {
            return Some(&notes[name_end..name_end + desc_size]);
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_has_a_build_id_unwind_tables_and_its_code_in_a_module() {
        let modules = loaded();
        let here = the_test_binary_has_a_build_id_unwind_tables_and_its_code_in_a_module
            as *const () as usize;
        let module = modules
            .iter()
            .find(|m| m.contains(here))
            .expect("the test binary is a loaded module");
        assert_eq!(module.build_id.len(), 20, "a GNU build id is a SHA-1");
        assert!(module.is_executable);
        assert!(module
            .path
            .ends_with(&*std::env::current_exe().unwrap().to_string_lossy()));
        let tables = module.unwind_tables.as_ref().expect("unwind tables");
        assert_eq!(tables.eh_frame_hdr[0], 1, ".eh_frame_hdr version 1");
        assert!(tables.eh_frame.len() > 1000);
        assert!(module.has_unwind_info(here as u64));
        assert!(!module.has_unwind_info(module.end as u64 + 4096));
    }
}
