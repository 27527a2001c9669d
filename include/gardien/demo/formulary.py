"""Reference data of the demo drug formulary (livret thérapeutique): drugs, dose limits, protocol templates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Drug:
    """One drug presentation of the formulary, before it is given a UCD code and a laboratory."""

    key: str  # stable short name used by protocol templates
    libelle: str  # UCD-style label without the laboratory, e.g. "PARACETAMOL 1 G CPR"
    atc: str
    forme: str
    unite: str  # dosing unit (unite_mesure code)
    doses: tuple[str, ...]  # usual doses per administration, in ``unite``
    adult: tuple[str, str]  # dose-alert limits per administration (min, max)
    pediatric: tuple[str, str, str] | None = None  # (min, max, unit) per kg, when used in children
    geriatric: tuple[str, str] | None = None  # lower limits for the elderly


def ean13_check_digit(body: str) -> str:
    """The EAN-13 check digit of a 12-digit ``body`` (UCD-13 codes are EAN-13 compatible)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return str((10 - total % 10) % 10)


def ucd13(serial: int) -> str:
    """A 13-digit UCD code: the French prefix 340089, a 6-digit serial, an EAN-13 check digit."""
    body = f"340089{serial:06d}"
    return body + ean13_check_digit(body)


def ucd13_valid(code: str) -> bool:
    """True when ``code`` is a well-formed UCD-13: 13 digits, prefix 340089, right check digit."""
    return (
        len(code) == 13
        and code.isdigit()
        and code.startswith("340089")
        and ean13_check_digit(code[:12]) == code[-1]
    )


CPR, GEL, INJ, PERF, SACH, NEB = (
    "comprimé",
    "gélule",
    "solution injectable",
    "solution pour perfusion",
    "poudre orale en sachet",
    "solution pour inhalation par nébuliseur",
)

DRUGS: tuple[Drug, ...] = (
    Drug(
        "PARA1G",
        "PARACETAMOL 1 G CPR",
        "N02BE01",
        CPR,
        "mg",
        ("500", "1000"),
        ("500", "1000"),
        ("10", "15", "mg/kg"),
        ("500", "1000"),
    ),
    Drug(
        "PARA1GIV",
        "PARACETAMOL 1 G/100 ML PERF",
        "N02BE01",
        PERF,
        "mg",
        ("1000",),
        ("500", "1000"),
        ("7.5", "15", "mg/kg"),
    ),
    Drug(
        "IBU400",
        "IBUPROFENE 400 MG CPR",
        "M01AE01",
        CPR,
        "mg",
        ("200", "400"),
        ("200", "400"),
        ("5", "10", "mg/kg"),
        ("200", "200"),
    ),
    Drug("KETO100", "KETOPROFENE 100 MG INJ", "M01AE03", INJ, "mg", ("50", "100"), ("50", "100")),
    Drug("NEFO20", "NEFOPAM 20 MG/2 ML INJ", "N02BG06", INJ, "mg", ("20",), ("10", "20")),
    Drug(
        "TRAM50",
        "TRAMADOL 50 MG GELULE",
        "N02AX02",
        GEL,
        "mg",
        ("50", "100"),
        ("50", "100"),
        None,
        ("50", "50"),
    ),
    Drug(
        "MORPH10",
        "MORPHINE 10 MG/1 ML INJ",
        "N02AA01",
        INJ,
        "mg",
        ("2", "3", "5", "10"),
        ("1", "10"),
        ("0.05", "0.1", "mg/kg"),
        ("1", "5"),
    ),
    Drug("OXY5", "OXYCODONE 5 MG GELULE", "N02AA05", GEL, "mg", ("5", "10"), ("5", "20"), None, ("5", "10")),
    Drug(
        "AMOX1G",
        "AMOXICILLINE 1 G CPR",
        "J01CA04",
        CPR,
        "mg",
        ("1000",),
        ("500", "2000"),
        ("25", "50", "mg/kg"),
    ),
    Drug(
        "AMC1G",
        "AMOXICILLINE/AC CLAVULANIQUE 1 G/125 MG SACHET",
        "J01CR02",
        SACH,
        "mg",
        ("1000",),
        ("500", "2000"),
        ("25", "50", "mg/kg"),
    ),
    Drug(
        "CEFTRI1G",
        "CEFTRIAXONE 1 G INJ",
        "J01DD04",
        INJ,
        "mg",
        ("1000", "2000"),
        ("1000", "2000"),
        ("50", "100", "mg/kg"),
    ),
    Drug(
        "CEFAZ2G",
        "CEFAZOLINE 2 G INJ",
        "J01DB04",
        INJ,
        "mg",
        ("2000",),
        ("1000", "4000"),
        ("30", "50", "mg/kg"),
    ),
    Drug(
        "PIPTAZ4G",
        "PIPERACILLINE/TAZOBACTAM 4 G/500 MG INJ",
        "J01CR05",
        INJ,
        "mg",
        ("4000",),
        ("2000", "4000"),
    ),
    Drug(
        "VANCO500",
        "VANCOMYCINE 500 MG INJ",
        "J01XA01",
        INJ,
        "mg",
        ("500", "1000"),
        ("500", "2000"),
        ("10", "15", "mg/kg"),
    ),
    Drug(
        "GENTA80",
        "GENTAMICINE 80 MG/2 ML INJ",
        "J01GB03",
        INJ,
        "mg",
        ("160", "240", "320"),
        ("80", "480"),
        ("3", "8", "mg/kg"),
    ),
    Drug("METRO500", "METRONIDAZOLE 500 MG/100 ML PERF", "J01XD01", PERF, "mg", ("500",), ("500", "500")),
    Drug("CIPRO500", "CIPROFLOXACINE 500 MG CPR", "J01MA02", CPR, "mg", ("500",), ("250", "750")),
    Drug(
        "ENOX4000",
        "ENOXAPARINE 4000 UI/0,4 ML INJ",
        "B01AB05",
        INJ,
        "UI",
        ("4000",),
        ("2000", "4000"),
        None,
        ("2000", "4000"),
    ),
    Drug(
        "ENOX6000",
        "ENOXAPARINE 6000 UI/0,6 ML INJ",
        "B01AB05",
        INJ,
        "UI",
        ("6000", "8000"),
        ("4000", "10000"),
    ),
    Drug(
        "HEPA25000",
        "HEPARINE SODIQUE 25 000 UI/5 ML INJ",
        "B01AB01",
        INJ,
        "UI",
        ("5000", "20000"),
        ("1000", "35000"),
        ("75", "100", "UI/kg"),
    ),
    Drug("APIX5", "APIXABAN 5 MG CPR", "B01AF02", CPR, "mg", ("2.5", "5"), ("2.5", "10"), None, ("2.5", "5")),
    Drug("ASPI75", "ACIDE ACETYLSALICYLIQUE 75 MG SACHET", "B01AC06", SACH, "mg", ("75",), ("75", "300")),
    Drug("CLOPI75", "CLOPIDOGREL 75 MG CPR", "B01AC04", CPR, "mg", ("75", "300"), ("75", "600")),
    Drug(
        "FURO40",
        "FUROSEMIDE 40 MG CPR",
        "C03CA01",
        CPR,
        "mg",
        ("20", "40", "80"),
        ("20", "500"),
        ("1", "2", "mg/kg"),
        ("20", "120"),
    ),
    Drug("FURO20IV", "FUROSEMIDE 20 MG/2 ML INJ", "C03CA01", INJ, "mg", ("20", "40"), ("20", "250")),
    Drug(
        "AMLO5",
        "AMLODIPINE 5 MG GELULE",
        "C08CA01",
        GEL,
        "mg",
        ("5", "10"),
        ("2.5", "10"),
        None,
        ("2.5", "5"),
    ),
    Drug("BISO5", "BISOPROLOL 5 MG CPR", "C07AB07", CPR, "mg", ("1.25", "2.5", "5"), ("1.25", "10")),
    Drug(
        "RAMI5", "RAMIPRIL 5 MG CPR", "C09AA05", CPR, "mg", ("2.5", "5"), ("1.25", "10"), None, ("1.25", "5")
    ),
    Drug("ATOR40", "ATORVASTATINE 40 MG CPR", "C10AA05", CPR, "mg", ("40", "80"), ("10", "80")),
    Drug("AMIO200", "AMIODARONE 200 MG CPR", "C01BD01", CPR, "mg", ("200", "400"), ("100", "1200")),
    Drug("NORAD8", "NORADRENALINE 8 MG/4 ML PERF", "C01CA03", PERF, "mg", ("8",), ("1", "16")),
    Drug(
        "INSASP",
        "INSULINE ASPARTE 100 UI/ML INJ",
        "A10AB05",
        INJ,
        "UI",
        ("2", "4", "6", "8"),
        ("1", "20"),
        ("0.1", "0.5", "UI/kg"),
    ),
    Drug("INSGLA", "INSULINE GLARGINE 100 UI/ML INJ", "A10AE04", INJ, "UI", ("10", "14", "20"), ("4", "80")),
    Drug(
        "METF1000",
        "METFORMINE 1000 MG CPR",
        "A10BA02",
        CPR,
        "mg",
        ("500", "1000"),
        ("500", "1000"),
        None,
        ("500", "500"),
    ),
    Drug(
        "OMEP20",
        "OMEPRAZOLE 20 MG GELULE",
        "A02BC01",
        GEL,
        "mg",
        ("20", "40"),
        ("10", "40"),
        ("0.7", "1.4", "mg/kg"),
    ),
    Drug("ESOM40IV", "ESOMEPRAZOLE 40 MG INJ", "A02BC05", INJ, "mg", ("40", "80"), ("20", "80")),
    Drug(
        "ONDA8",
        "ONDANSETRON 8 MG/4 ML INJ",
        "A04AA01",
        INJ,
        "mg",
        ("4", "8"),
        ("4", "8"),
        ("0.1", "0.15", "mg/kg"),
    ),
    Drug("METOC10", "METOCLOPRAMIDE 10 MG CPR", "A03FA01", CPR, "mg", ("10",), ("5", "10"), None, ("5", "5")),
    Drug("MACRO10", "MACROGOL 4000 10 G SACHET", "A06AD15", SACH, "g", ("10", "20"), ("10", "20")),
    Drug(
        "LEVO100",
        "LEVOTHYROXINE 100 MICROGRAMMES CPR",
        "H03AA01",
        CPR,
        "µg",
        ("50", "75", "100"),
        ("25", "200"),
    ),
    Drug(
        "PRED20",
        "PREDNISOLONE 20 MG CPR ORODISPERSIBLE",
        "H02AB06",
        CPR,
        "mg",
        ("20", "40", "60"),
        ("5", "80"),
        ("1", "2", "mg/kg"),
    ),
    Drug("METHYL40", "METHYLPREDNISOLONE 40 MG INJ", "H02AB04", INJ, "mg", ("40", "80"), ("20", "120")),
    Drug(
        "DEXA4",
        "DEXAMETHASONE 4 MG/1 ML INJ",
        "H02AB02",
        INJ,
        "mg",
        ("4", "8"),
        ("4", "20"),
        ("0.15", "0.6", "mg/kg"),
    ),
    Drug(
        "SALBU5",
        "SALBUTAMOL 5 MG/2,5 ML NEBULISEUR",
        "R03AC02",
        NEB,
        "mg",
        ("2.5", "5"),
        ("2.5", "5"),
        ("0.1", "0.15", "mg/kg"),
    ),
    Drug("IPRA05", "IPRATROPIUM 0,5 MG/2 ML NEBULISEUR", "R03BB01", NEB, "mg", ("0.5",), ("0.25", "0.5")),
    Drug("OXAZ10", "OXAZEPAM 10 MG CPR", "N05BA04", CPR, "mg", ("10", "20"), ("10", "50"), None, ("5", "10")),
    Drug(
        "ZOPI75",
        "ZOPICLONE 7,5 MG CPR",
        "N05CF01",
        CPR,
        "mg",
        ("3.75", "7.5"),
        ("3.75", "7.5"),
        None,
        ("3.75", "3.75"),
    ),
    Drug(
        "HALO5",
        "HALOPERIDOL 5 MG/1 ML INJ",
        "N05AD01",
        INJ,
        "mg",
        ("1", "2.5", "5"),
        ("0.5", "10"),
        None,
        ("0.5", "2"),
    ),
    Drug(
        "MIDA5",
        "MIDAZOLAM 5 MG/5 ML INJ",
        "N05CD08",
        INJ,
        "mg",
        ("1", "2", "5"),
        ("0.5", "10"),
        ("0.05", "0.2", "mg/kg"),
        ("0.5", "2.5"),
    ),
    Drug("PROPO200", "PROPOFOL 200 MG/20 ML INJ", "N01AX10", INJ, "mg", ("100", "200"), ("20", "400")),
    Drug(
        "KCL1G",
        "CHLORURE DE POTASSIUM 1 G/10 ML PERF",
        "B05XA01",
        PERF,
        "mmol",
        ("13.4", "26.8"),
        ("6.7", "40"),
    ),
    Drug(
        "NACL09",
        "CHLORURE DE SODIUM 0,9 % 500 ML PERF",
        "B05XA03",
        PERF,
        "mL",
        ("500", "1000"),
        ("100", "2000"),
    ),
    Drug("G5", "GLUCOSE 5 % 500 ML PERF", "B05BA03", PERF, "mL", ("500", "1000"), ("100", "2000")),
    Drug(
        "LEVE500",
        "LEVETIRACETAM 500 MG CPR",
        "N03AX14",
        CPR,
        "mg",
        ("500", "1000"),
        ("250", "1500"),
        ("10", "30", "mg/kg"),
    ),
    Drug("VITK10", "PHYTOMENADIONE 10 MG/1 ML INJ", "B02BA01", INJ, "mg", ("5", "10"), ("1", "10")),
)

# The drug the qualification environment adds (never part of the production formulary).
NEW_DRUG = Drug("DAPA10", "DAPAGLIFLOZINE 10 MG CPR", "A10BK01", CPR, "mg", ("10",), ("5", "10"))
NEW_DRUG_UCD_SERIAL = 999_001

# Generic laboratories; scale > 1 adds generic presentations of the same drugs.
LABORATOIRES: tuple[str, ...] = ("ARROW", "BIOGARAN", "EG", "MYLAN", "SANDOZ", "TEVA", "ZENTIVA", "CRISTERS")

FREQUENCES: tuple[str, ...] = (
    "1 fois par jour",
    "2 fois par jour",
    "3 fois par jour",
    "toutes les 6 heures",
    "toutes les 8 heures",
    "le soir au coucher",
    "si douleur, 4 fois par jour au maximum",
    "en continu au pousse-seringue",
    "dose unique",
    "avant chaque repas",
)

# (label, services where it is used, drug keys it draws its lines from)
PROTOCOL_TEMPLATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Antalgie post-opératoire palier 1",
        ("VISC", "ORTHO", "URO"),
        ("PARA1G", "PARA1GIV", "NEFO20", "KETO100"),
    ),
    (
        "Antalgie post-opératoire palier 3",
        ("VISC", "ORTHO", "ANEST"),
        ("PARA1GIV", "MORPH10", "OXY5", "ONDA8"),
    ),
    (
        "Antibioprophylaxie chirurgicale",
        ("VISC", "ORTHO", "URO", "ANEST"),
        ("CEFAZ2G", "VANCO500", "METRO500"),
    ),
    ("Pneumopathie communautaire", ("PNEUMO", "MIP", "URG"), ("AMC1G", "CEFTRI1G", "PARA1G", "NACL09")),
    ("Sepsis - antibiothérapie probabiliste", ("URG", "REA"), ("PIPTAZ4G", "GENTA80", "NACL09", "NORAD8")),
    ("Pyélonéphrite aiguë", ("URO", "MIP", "URG"), ("CEFTRI1G", "CIPRO500", "PARA1G")),
    ("Prévention de la maladie thrombo-embolique", ("ORTHO", "VISC", "MIP", "GERIA"), ("ENOX4000",)),
    ("Décompensation cardiaque", ("CARDIO", "URG"), ("FURO20IV", "FURO40", "BISO5", "RAMI5", "KCL1G")),
    ("Syndrome coronarien aigu", ("CARDIO", "URG"), ("ASPI75", "CLOPI75", "ENOX6000", "ATOR40", "BISO5")),
    ("Fibrillation atriale", ("CARDIO",), ("AMIO200", "APIX5", "BISO5", "HEPA25000")),
    ("Insulinothérapie sous-cutanée", ("MIP", "GERIA", "GASTRO"), ("INSGLA", "INSASP", "G5")),
    ("Exacerbation de BPCO", ("PNEUMO", "URG"), ("SALBU5", "IPRA05", "PRED20", "AMC1G")),
    ("Asthme aigu grave", ("URG", "PEDIA"), ("SALBU5", "IPRA05", "METHYL40")),
    ("Nausées et vomissements post-opératoires", ("ANEST", "VISC"), ("ONDA8", "DEXA4", "METOC10")),
    ("Sédation-analgésie en réanimation", ("REA",), ("MIDA5", "PROPO200", "MORPH10")),
    ("Hypokaliémie - supplémentation", ("MIP", "REA", "CARDIO"), ("KCL1G", "NACL09")),
    ("Agitation aiguë du sujet âgé", ("GERIA", "URG"), ("HALO5", "OXAZ10")),
    ("Crise convulsive", ("NEURO", "URG", "PEDIA"), ("MIDA5", "LEVE500")),
    ("Surdosage en AVK", ("URG", "CARDIO"), ("VITK10",)),
    ("Hémorragie digestive haute", ("GASTRO", "URG", "REA"), ("ESOM40IV", "NACL09")),
    ("Constipation sous opioïdes", ("GERIA", "MIP", "ORTHO"), ("MACRO10",)),
    ("Hypothyroïdie - substitution", ("MIP", "GERIA"), ("LEVO100",)),
    ("Insomnie de l'hospitalisé", ("MIP", "PNEUMO", "GERIA"), ("ZOPI75", "OXAZ10")),
    ("Fièvre de l'enfant", ("PEDIA",), ("PARA1G", "IBU400")),
    ("Diabète de type 2 - relais per os", ("MIP", "CARDIO"), ("METF1000", "INSGLA")),
)

# The protocol the qualification environment adds, using NEW_DRUG (dose, unit, frequency per line).
NEW_PROTOCOL_LABEL = "Insuffisance cardiaque à FEVG réduite - quadrithérapie"
NEW_PROTOCOL_LINES: tuple[tuple[str, str, str], ...] = (
    ("DAPA10", "10", "1 fois par jour"),
    ("BISO5", "1.25", "1 fois par jour"),
    ("RAMI5", "2.5", "1 fois par jour"),
    ("FURO40", "40", "1 fois par jour"),
)
