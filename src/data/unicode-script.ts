// The Unicode script of a code point, as SentencePiece's trainer uses it: a merged piece may not
// mix scripts (split_by_unicode_script), so "a." or "é,"-like pieces never form — Latin letters
// and Common punctuation stay apart. SentencePiece carries its own table (unicode_script_map.h);
// here the JavaScript engine's Unicode data answers through `\p{Script=…}` regular expressions.
// Code points outside every script (unassigned) count as Common, as in SentencePiece.

/** ISO 15924 codes of the Unicode scripts; names the engine does not know are skipped. */
const SCRIPT_CODES = (
  'Latn Zyyy Zinh Grek Cyrl Armn Hebr Arab Syrc Thaa Nkoo Samr Mand Deva Beng Guru Gujr Orya Taml ' +
  'Telu Knda Mlym Sinh Thai Laoo Tibt Mymr Geor Hang Ethi Cher Cans Ogam Runr Khmr Mong Hira Kana ' +
  'Bopo Hani Yiii Ital Goth Dsrt Tglg Hano Buhd Tagb Limb Tale Linb Ugar Shaw Osma Cprt Brai Bugi ' +
  'Copt Talu Glag Tfng Sylo Xpeo Khar Bali Xsux Phnx Phag Sund Lepc Olck Vaii Saur Kali Rjng Lyci ' +
  'Cari Lydi Cham Lana Tavt Avst Egyp Bamu Lisu Armi Sarb Prti Phli Orkh Kthi Batk Brah Cakm ' +
  'Merc Mero Plrd Shrd Sora Takr Aghb Bass Dupl Elba Gran Hmng Khoj Lina Mahj Mani Mend Modi Mroo ' +
  'Narb Nbat Palm Pauc Perm Phlp Sidd Sind Tirh Wara Ahom Hluw Hatr Mult Hung Sgnw Adlm Bhks Marc ' +
  'Newa Osge Tang Gonm Nshu Soyo Zanb Dogr Gong Maka Medf Rohg Sogd Sogo Elym Hmnp Nand Wcho Chrs ' +
  'Diak Kits Yezi Cpmn Ougr Tnsa Toto Vith Kawi Nagm'
).split(' ');

const scriptTests: Array<[string, RegExp]> = [];
for (const code of SCRIPT_CODES) {
  try {
    scriptTests.push([code, new RegExp(`^\\p{Script=${code}}$`, 'u')]);
  } catch {
    // this engine's Unicode version has no such script: no character can belong to it
  }
}

const cache = new Map<number, string>();

/** The script code of `cp` ('Latn', 'Zyyy' = Common, 'Zinh' = Inherited, …). */
export function scriptOf(cp: number): string {
  let s = cache.get(cp);
  if (s !== undefined) return s;
  s = 'Zyyy';
  const ch = String.fromCodePoint(cp);
  for (const [code, re] of scriptTests) {
    if (re.test(ch)) {
      s = code;
      break;
    }
  }
  cache.set(cp, s);
  return s;
}
